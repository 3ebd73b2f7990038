/**
 * Every default and every bound that the flags, the config file, the wire schemas and the
 * processes share, in one place: a limit changed here is the same limit everywhere.
 */
import {z} from 'zod';

export type Range = {readonly min: number; readonly max: number};

/** Inclusive bounds of the integer settings. */
export const limits = {
  /** 0 asks the OS for a free port. */
  port: {min: 0, max: 65_535},
  contextSize: {min: 128, max: 1_048_576},
  threads: {min: 1, max: 1_024},
  parallel: {min: 1, max: 64},
  maxQueue: {min: 0, max: 100_000},
  heartbeatIntervalMs: {min: 50, max: 600_000},
  orphanTimeoutMs: {min: 100, max: 86_400_000},
  missedHeartbeats: {min: 2, max: 1_000},
  loadStallTimeoutMs: {min: 1_000, max: 86_400_000},
  workerTimeoutMs: {min: 50, max: 600_000},
  stopGraceMs: {min: 0, max: 600_000},
  readyTimeoutMs: {min: 100, max: 86_400_000},
  /** A worker with no request for this long is stopped (models on demand, `--idle-timeout`). */
  idleTimeoutMs: {min: 1_000, max: 30 * 86_400_000},
  /** How long a request may wait for its model's worker to start. */
  modelStartTimeoutMs: {min: 1_000, max: 86_400_000},
  maxLoadedModels: {min: 1, max: 1_024},
  /** `--timeout` of the commands that wait (`--wait`, `worker wait`). */
  waitSeconds: {min: 1, max: 86_400},
} as const satisfies Record<string, Range>;

export const defaults = {
  hiveHost: '127.0.0.1',
  hivePort: 7833,
  heartbeatIntervalMs: 5_000,
  /** A worker silent for this many intervals is failed; a worker its hive has not answered for as many exits. */
  missedHeartbeats: 3,
  /** Before its first heartbeat a worker is still starting Node and binding its port: it gets at least this long. */
  firstHeartbeatGraceMs: 15_000,
  loadStallTimeoutMs: 120_000,
  workerTimeoutMs: 2_000,
  stopGraceMs: 10_000,
  /** How long an engine may take to become ready, when its adapter does not say. */
  readyTimeoutMs: 10 * 60_000,
  /** Tokens of context per parallel request. */
  contextSize: 4_096,
  /** Requests generated at once. */
  parallel: 4,
  /** Requests that may wait beyond `parallel` before the worker answers 503. */
  maxQueue: 256,
  /** Models on demand: a catalogue worker with no request for this long is stopped. */
  idleTimeoutMs: 10 * 60_000,
  /** Models on demand: how long a request waits for its model to start before a 503. */
  modelStartTimeoutMs: 5 * 60_000,
  /** Models on demand: the share of a device's memory a start leaves free. */
  vramHeadroom: 0.1,
  /** On stop, how long in-flight requests may finish. */
  drainTimeoutMs: 8_000,
} as const;

/** The zod schema of an integer setting within its bounds. */
export function integerIn(range: Range): z.ZodNumber {
  return z.number().int().min(range.min).max(range.max);
}
