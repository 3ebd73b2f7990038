import {defaults} from '../config/limits.js';
import type {WorkerView} from './worker-record.js';

export type HealthLimits = {heartbeatIntervalMs: number; loadStallTimeoutMs: number; missedHeartbeats: number};

/**
 * Why a worker the hive thinks is running must be failed now, or null. Missed heartbeats
 * (`missedHeartbeats` intervals, 3 by default) catch a live but hung worker; a starting worker whose download or load has not
 * moved for the stall timeout has stalled, however long the whole load may take.
 */
export function judgeHealth(record: WorkerView, now: number, limits: HealthLimits): string | null {
  // A load is judged by its progress only once the engine reports some: one that reports none (its
  // output is no measure) is bounded by the worker's ready timeout instead, and by its heartbeats.
  const measured = record.progress?.phase !== 'loading' || (record.lastHeartbeatAt !== null && record.lastHeartbeat?.load_progress !== undefined);
  if (record.state === 'starting' && measured && now - record.lastProgressAt.getTime() > limits.loadStallTimeoutMs) {
    return `load stalled: no progress for ${Math.round((now - record.lastProgressAt.getTime()) / 1000)} s (worker type ${record.spec.type})`;
  }
  if (record.launchedAt === null || record.pid === null) {
    return null;
  }
  const interval = record.spec.heartbeat_interval_ms ?? limits.heartbeatIntervalMs;
  const last = (record.lastHeartbeatAt ?? record.launchedAt).getTime();
  // Before its first heartbeat a worker is still starting Node and binding its port; while it loads,
  // loading may starve its heartbeats on a busy machine, and the stall watchdog above bounds a stuck load.
  const missed = limits.missedHeartbeats * interval;
  const limit = record.lastHeartbeatAt === null || record.state === 'starting' ? Math.max(missed, defaults.firstHeartbeatGraceMs) : missed;
  return now - last > limit ? `missed ${limits.missedHeartbeats} heartbeats (none for ${now - last} ms)` : null;
}
