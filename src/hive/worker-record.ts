import path from 'node:path';
import type {Heartbeat, SpawnWorkerRequest, WorkerInfo, WorkerState} from '../protocol/wire.js';
import type {GroupMember} from './group-record.js';
import {matchesHash, sha256Hex, workerKeyOf} from '../http/secrets.js';

export type WorkerProgress = {phase: string; done: number; total: number | null};

/** What the hive knows of one worker; written only by the worker table's transitions (worker-table.ts). */
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
  /**
   * The heartbeat secret its process was given, in memory only; null for a worker re-adopted from
   * the store (which keeps only the hash) until its first heartbeat proves it.
   */
  secret: string | null;
  /** sha256 (hex) of the secret: what heartbeats are checked against, and what is stored. */
  secretHash: string;
  startedAt: Date;
  launchedAt: Date | null;
  lastHeartbeatAt: Date | null;
  lastHeartbeat: Heartbeat | null;
  progress: WorkerProgress | null;
  /** When the download or load last moved; a starting worker that stops moving has stalled. */
  lastProgressAt: Date;
  /** Requests the hive is routing to it right now; the router prefers the least loaded. */
  inFlight: number;
  /** Requests the hive has routed to it since it was spawned. */
  requestsRouted: number;
  /** When a request through the hive last began or ended, or it began to serve: what idleness is measured from. */
  lastActiveAt: Date;
  restarts: number;
  /** Taken over from a previous hive process rather than started by this one. */
  adopted: boolean;
  /** Memory admission counted for it while it loads (0 once it serves). */
  reservedBytes: number;
  /** Asked to drain: it finishes what it has and gets nothing new. */
  draining: boolean;
  /** Its part in a worker group, or null for a worker of its own. */
  group: GroupMember | null;
  /** Why its last process failed; kept while it restarts, cleared once it serves. */
  lastFailure: string | null;
};

/** A worker as everyone but the worker table sees it: read only (the table owns the records). */
export type WorkerView = Readonly<Omit<WorkerRecord, 'aliases' | 'group' | 'spec' | 'progress'>> & {
  readonly aliases: ReadonlySet<string>;
  readonly group: Readonly<GroupMember> | null;
  readonly spec: Readonly<SpawnWorkerRequest>;
  readonly progress: Readonly<WorkerProgress> | null;
};

export function workerUrl(record: WorkerView): string {
  return `http://127.0.0.1:${record.port}`;
}

/** Whether requests may go to it now. A group serves through its coordinator, and only while every member is there. */
export function isServing(record: WorkerView): boolean {
  if (record.group !== null && (record.group.membership.role !== 'coordinator' || record.group.group.health !== 'healthy')) {
    return false;
  }
  return (record.state === 'ready' || record.state === 'busy') && !record.draining;
}

export function isAlive(state: WorkerState): boolean {
  return state !== 'stopped' && state !== 'failed';
}

/** `tokensRelayed`: the hive's own count (relayed-tokens.ts); the record counts requests only. */
export function toWorkerInfo(record: WorkerView, tokensRelayed: number): WorkerInfo {
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
    context_size: record.spec.context_size ?? null,
    parallel: record.spec.parallel ?? null,
    threads: record.spec.threads ?? null,
    max_queue: record.spec.max_queue ?? null,
    group_id: record.group?.group.id ?? null,
    role: record.group?.membership.role ?? null,
    last_failure: record.lastFailure,
    requests_routed: record.requestsRouted,
    tokens_relayed: tokensRelayed,
  };
}

/** A record with every counter at rest; `fields` says what is known of the worker so far. */
export function createWorkerRecord(
  fields: Pick<WorkerRecord, 'id' | 'spec' | 'modelName' | 'modelPath' | 'port' | 'secret'> & Partial<WorkerRecord>,
): WorkerRecord {
  return {
    secretHash: fields.secret === null ? '' : sha256Hex(fields.secret),
    aliases: modelAliases(fields.spec, fields.modelName, fields.modelPath),
    state: 'starting',
    reason: null,
    pid: null,
    startedAt: new Date(),
    launchedAt: null,
    lastHeartbeatAt: null,
    lastHeartbeat: null,
    progress: null,
    lastProgressAt: new Date(),
    inFlight: 0,
    requestsRouted: 0,
    lastActiveAt: new Date(),
    restarts: 0,
    adopted: false,
    reservedBytes: 0,
    draining: false,
    group: null,
    lastFailure: null,
    ...fields,
  };
}

/**
 * Every name a request may use for a model: the reference it was spawned with, the name it was
 * given (a catalogue entry's), its model's name, its path and file name.
 */
export function modelAliases(spec: Pick<SpawnWorkerRequest, 'model' | 'name'>, name: string, modelPath: string | null): Set<string> {
  return new Set([spec.model, ...(spec.name === undefined ? [] : [spec.name]), name, ...(modelPath === null ? [] : [modelPath, path.basename(modelPath)])]);
}

/** Whether `secret` is the worker's, compared as sha256 digests in constant time. */
export function hasSecret(record: WorkerView, secret: string | undefined): boolean {
  return record.secretHash !== '' && matchesHash(secret, record.secretHash);
}

/** Gives the record a fresh heartbeat secret (before a launch: the process it goes to is new). */
export function renewSecret(record: WorkerRecord, secret: string): void {
  record.secret = secret;
  record.secretHash = sha256Hex(secret);
}

/** The key the worker's own HTTP server demands (null while a re-adopted worker has not heartbeated yet). */
export function workerKey(record: WorkerView): string | null {
  return record.secret === null ? null : workerKeyOf(record.secret);
}

/** The header that opens the worker's port (none while its key is unknown: the worker then answers 401). */
export function workerAuthorization(record: WorkerView): Record<string, string> {
  const key = workerKey(record);
  return key === null ? {} : {authorization: `Bearer ${key}`};
}
