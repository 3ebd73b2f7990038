import {defaults} from '../config/limits.js';

/** Defaults a worker runs with, shared by the worker itself and the hive's memory estimate (see config/limits.ts). */
export const workerDefaults = {
  contextSize: defaults.contextSize,
  parallel: defaults.parallel,
  maxQueue: defaults.maxQueue,
  heartbeatIntervalMs: defaults.heartbeatIntervalMs,
  drainTimeoutMs: defaults.drainTimeoutMs,
} as const;

/** A worker exits when its hive has not answered for this many heartbeat intervals. */
export const orphanIntervals = defaults.missedHeartbeats;
