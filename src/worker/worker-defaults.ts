/** Defaults a worker runs with, shared by the worker itself and the hive's memory estimate. */
export const workerDefaults = {
  /** Tokens of context per parallel request. */
  contextSize: 4_096,
  /** Requests generated at once. */
  parallel: 4,
  /** Requests that may wait beyond `parallel` before the worker answers 503. */
  maxQueue: 256,
  heartbeatIntervalMs: 5_000,
  /** On stop, how long in-flight requests may finish. */
  drainTimeoutMs: 8_000,
} as const;

/** A worker exits when its hive has not answered for this many heartbeat intervals. */
export const orphanIntervals = 3;
