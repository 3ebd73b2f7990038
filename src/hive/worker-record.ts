import type {Heartbeat, SpawnWorkerRequest, WorkerInfo, WorkerState} from '../protocol/wire.js';

export type WorkerProgress = {phase: string; done: number; total: number | null};

/** What the hive knows of one worker. The process handle lives in the supervisor, not here. */
export type WorkerRecord = {
  id: string;
  spec: SpawnWorkerRequest;
  modelName: string;
  modelPath: string | null;
  /** Every name a request may use for this worker's model: the reference, the file name, the path. */
  aliases: Set<string>;
  state: WorkerState;
  reason: string | null;
  pid: number | null;
  port: number;
  secret: string;
  startedAt: Date;
  launchedAt: Date | null;
  lastHeartbeatAt: Date | null;
  lastHeartbeat: Heartbeat | null;
  progress: WorkerProgress | null;
  /** When the download or load last moved; a starting worker that stops moving has stalled. */
  lastProgressAt: Date;
  /** Requests the hive is routing to it right now; the router prefers the least loaded. */
  inFlight: number;
  restarts: number;
  restartTimes: number[];
  /** Taken over from a previous hive process rather than started by this one. */
  adopted: boolean;
  /** Memory admission counted for it while it loads (0 once it serves). */
  reservedBytes: number;
  /** Asked to drain: it finishes what it has and gets nothing new. */
  draining: boolean;
};

export function workerUrl(record: WorkerRecord): string {
  return `http://127.0.0.1:${record.port}`;
}

export function isServing(record: WorkerRecord): boolean {
  return (record.state === 'ready' || record.state === 'busy') && !record.draining;
}

export function isAlive(state: WorkerState): boolean {
  return state !== 'stopped' && state !== 'failed';
}

export function toWorkerInfo(record: WorkerRecord): WorkerInfo {
  return {
    worker_id: record.id,
    type: record.spec.type,
    model: record.modelName,
    model_path: record.modelPath,
    device: record.spec.device,
    state: record.state,
    reason: record.reason,
    pid: record.pid,
    port: record.port,
    url: workerUrl(record),
    started_at: record.startedAt.toISOString(),
    last_heartbeat_at: record.lastHeartbeatAt?.toISOString() ?? null,
    last_heartbeat: record.lastHeartbeat,
    progress: record.progress,
    restart: record.spec.restart,
    restarts: record.restarts,
    adopted: record.adopted,
    draining: record.draining,
  };
}
