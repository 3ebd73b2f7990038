/**
 * The hive's one restart scheduler. What comes back after a failure is a unit: a lone worker is a
 * unit of one, a worker group a unit of all its members (it cannot serve without any of them).
 * For each unit it keeps the restart history the policy's limits are counted on, decides with the
 * policy whether the unit comes back, and holds the one backoff timer.
 */
import type {RestartPolicy} from '../protocol/wire.js';
import {decideRestart, defaultRestartLimits, type EndKind, type RestartDecision, type RestartLimits} from './restart-policy.js';

export class RestartScheduler {
  readonly #limits: RestartLimits;
  readonly #now: () => number;
  readonly #timers = new Map<string, NodeJS.Timeout>();
  readonly #history = new Map<string, number[]>();

  constructor(limits: RestartLimits = defaultRestartLimits, now: () => number = Date.now) {
    this.#limits = limits;
    this.#now = now;
  }

  /**
   * A unit ended: returns the policy's decision and, when it comes back, calls `relaunch` after the
   * backoff (the restart is counted then). A unit with a restart pending is not scheduled twice.
   */
  schedule(unit: string, policy: RestartPolicy, end: EndKind, relaunch: () => void): RestartDecision {
    if (this.#timers.has(unit)) {
      return {restart: false, why: 'a restart is already pending'};
    }
    const decision = decideRestart({policy, end, recentRestarts: this.#history.get(unit) ?? [], now: this.#now(), limits: this.#limits});
    if (decision.restart) {
      const timer = setTimeout(() => {
        this.#timers.delete(unit);
        this.#history.set(unit, [...(this.#history.get(unit) ?? []).filter(time => this.#now() - time < this.#limits.windowMs), this.#now()]);
        relaunch();
      }, decision.delayMs);
      // A hive that is closing does not wait for anything to come back.
      timer.unref();
      this.#timers.set(unit, timer);
    }
    return decision;
  }

  /** Whether the unit is waiting out its backoff. */
  pending(unit: string): boolean {
    return this.#timers.has(unit);
  }

  /** Calls off a pending restart; true when there was one. */
  cancel(unit: string): boolean {
    const timer = this.#timers.get(unit);
    if (timer === undefined) {
      return false;
    }
    clearTimeout(timer);
    this.#timers.delete(unit);
    return true;
  }

  /** The hive is stopping: nothing comes back. */
  cancelAll(): void {
    for (const timer of this.#timers.values()) {
      clearTimeout(timer);
    }
    this.#timers.clear();
  }
}
