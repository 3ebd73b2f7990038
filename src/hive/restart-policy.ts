import type {RestartPolicy} from '../protocol/wire.js';

export type RestartLimits = {
  /** First backoff; each further restart in a row doubles it, up to `maxDelayMs`. */
  baseDelayMs: number;
  maxDelayMs: number;
  /** At most this many restarts within `windowMs`; past that the worker stays failed. */
  maxRestarts: number;
  windowMs: number;
};

export const defaultRestartLimits: RestartLimits = {baseDelayMs: 1_000, maxDelayMs: 30_000, maxRestarts: 5, windowMs: 10 * 60_000};

/** How a worker ended: asked to (stop, hive shutdown), cleanly on its own, or by failing. */
export type EndKind = 'requested' | 'clean-exit' | 'failure';

export type RestartDecision = {restart: true; delayMs: number} | {restart: false; why: string};

/**
 * Decides whether a worker that ended comes back and after how long. Pure, so the policy is
 * tested without processes; `recentRestarts` are the times of this worker's earlier restarts.
 */
export function decideRestart(options: {
  policy: RestartPolicy;
  end: EndKind;
  recentRestarts: readonly number[];
  now: number;
  limits: RestartLimits;
}): RestartDecision {
  const {policy, end, limits, now} = options;
  if (end === 'requested') {
    return {restart: false, why: 'stopped on request'};
  }
  if (policy === 'never') {
    return {restart: false, why: 'restart policy is "never"'};
  }
  if (policy === 'on-failure' && end === 'clean-exit') {
    return {restart: false, why: 'exited cleanly and the restart policy is "on-failure"'};
  }
  const inWindow = options.recentRestarts.filter(time => now - time < limits.windowMs);
  if (inWindow.length >= limits.maxRestarts) {
    return {restart: false, why: `restarted ${inWindow.length} times within ${Math.round(limits.windowMs / 1000)} s; giving up`};
  }
  const delayMs = Math.min(limits.maxDelayMs, limits.baseDelayMs * 2 ** inWindow.length);
  return {restart: true, delayMs};
}
