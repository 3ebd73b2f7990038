/**
 * When the hive starts its spare worker processes (spare-workers.ts): a spare's boot is CPU taken
 * from whatever runs, so spares start when the hive is quiet (no worker booting, no request in
 * flight or held for a start). A worker whose process has booted and heartbeated (its engine is
 * loading), and the requests held for it, do not hold a spare back: a start that took the spare is
 * often followed at once by another (a swap under maxLoadedModels, a request for a second model),
 * and that one waited for the whole boot of a spare started after the first was done
 * (bench/results/2026-12-06-cpu-vm-on-demand.md: +290 ms on a swap). A busy hive still gets its
 * spare `spareWhileBusyAfterMs` after it went missing, once no worker is booting; a hive with a
 * worker booting, after `spareWhileStartingAfterMs`.
 */
import type {SpareWorkers} from './spare-workers.js';
import type {WorkerView} from './worker-record.js';

export const spareWhileBusyAfterMs = 5_000;
export const spareWhileStartingAfterMs = 30_000;

/** What the hive is doing, as far as starting a spare goes. */
export type HiveActivity = {
  /** A worker's process is booting (starting, no heartbeat yet). */
  booting: boolean;
  /** A worker's engine is loading (starting, heartbeating). */
  loading: boolean;
  /** A request is in flight at a worker. */
  inFlight: boolean;
  /** A request is held, waiting for a worker to start (models on demand). */
  requestsHeld: boolean;
};

export function activityOf(workers: Iterable<WorkerView>, requestsHeld: boolean): HiveActivity {
  const activity: HiveActivity = {booting: false, loading: false, inFlight: false, requestsHeld};
  for (const worker of workers) {
    activity.booting ||= worker.state === 'starting' && worker.lastHeartbeatAt === null;
    activity.loading ||= worker.state === 'starting' && worker.lastHeartbeatAt !== null;
    activity.inFlight ||= worker.inFlight > 0;
  }
  return activity;
}

/** Whether spares lacking for `lackingForMs` start now. */
export function shouldRefill(activity: HiveActivity, lackingForMs: number): boolean {
  // A request held for a model goes in flight the moment it serves: a spare's boot then would
  // take CPU from that first request. While the model's engine is still loading, the request
  // waits for the load whatever a spare does, and the spare is ready well before the engine.
  const busy = activity.inFlight || (!activity.loading && activity.requestsHeld);
  return (!activity.booting && (!busy || lackingForMs >= spareWhileBusyAfterMs)) || lackingForMs >= spareWhileStartingAfterMs;
}

/**
 * Looks at the spares once the current work is done (a heartbeat's answer, a state change's
 * listeners), at most once per turn of the event loop: starting a process blocks this thread for a
 * few ms.
 */
export class SpareRefill {
  readonly #spares: SpareWorkers | undefined;
  readonly #activity: () => HiveActivity;
  #pending = false;

  constructor(spares: SpareWorkers | undefined, activity: () => HiveActivity) {
    this.#spares = spares;
    this.#activity = activity;
  }

  /** Spare worker processes: kept for `type` from now on (started when the hive is quiet). */
  want(type: string): void {
    this.#spares?.want(type);
    this.poke();
  }

  poke(): void {
    if (this.#spares === undefined || this.#pending) {
      return;
    }
    this.#pending = true;
    setImmediate(() => {
      this.#pending = false;
      const lackingFor = this.#spares?.lackingForMs() ?? null;
      if (lackingFor !== null && shouldRefill(this.#activity(), lackingFor)) {
        this.#spares?.refill();
      }
    });
  }
}
