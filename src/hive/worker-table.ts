/**
 * The hive's one table of workers. Every change to a worker record goes through a transition here
 * (added, model resolved, launched, heartbeat, request in and out, drained, state, ended,
 * relaunched), which persists the record and announces the change; everyone else reads views.
 */
import {RbeeError} from '../errors.js';
import {randomSecret} from '../http/secrets.js';
import type {Heartbeat, WorkerState} from '../protocol/wire.js';
import type {GroupMember} from './group-record.js';
import {toStoredWorker, type StateStore} from './state-store.js';
import {modelAliases, renewSecret, workerKey, type WorkerProgress, type WorkerRecord, type WorkerView} from './worker-record.js';

export type {WorkerView} from './worker-record.js';

export type WorkerChange = {type: 'spawned' | 'state' | 'restart'; worker: WorkerView};

export type WorkerTableOptions = {
  store: StateStore;
  /** Called after each announced change, once the record is persisted. */
  onChange: (change: WorkerChange) => void;
};

/** What routes, the router, metrics and the dashboard feed may do with the table: read. */
export type WorkerReader = Pick<WorkerTable, 'get' | 'has' | 'require' | 'values' | 'size' | 'reservedOn'>;

export class WorkerTable {
  readonly #records = new Map<string, WorkerRecord>();
  readonly #options: WorkerTableOptions;

  constructor(options: WorkerTableOptions) {
    this.#options = options;
  }

  get(id: string): WorkerView | undefined {
    return this.#records.get(id);
  }

  has(id: string): boolean {
    return this.#records.has(id);
  }

  /** The worker, or `worker_not_found`. */
  require(id: string): WorkerView {
    const record = this.#records.get(id);
    if (record === undefined) {
      throw new RbeeError('worker_not_found', `no worker "${id}" on this hive`);
    }
    return record;
  }

  values(): IterableIterator<WorkerView> {
    return this.#records.values();
  }

  get size(): number {
    return this.#records.size;
  }

  /** What starting workers on a device will still allocate: admission counts it as taken. */
  reservedOn(device: string, except: string | null): number {
    let reserved = 0;
    for (const record of this.#records.values()) {
      if (record.id !== except && record.state === 'starting' && record.spec.device === device) {
        reserved += record.reservedBytes;
      }
    }
    return reserved;
  }

  /** A worker enters the table: a new one (announced as spawned), or one re-adopted from the store (not announced). */
  add(record: WorkerRecord, how: 'spawned' | 'adopted'): WorkerView {
    if (this.#records.has(record.id)) {
      throw new RbeeError('internal', `worker ${record.id} is already in the table`);
    }
    this.#records.set(record.id, record);
    if (how === 'spawned') {
      this.#announce(record, 'spawned');
    }
    return record;
  }

  /** Leaves the table (its process, if any, is someone else's concern): nothing is announced or stored. */
  remove(id: string): void {
    this.#records.delete(id);
  }

  /** Its model is known: the names requests may use for it follow. A shard serves no model name of its own. */
  resolved(id: string, model: {name: string; path: string}): void {
    const record = this.#record(id);
    record.modelName = model.name;
    // An engine's own model (`engine:<name>`) has no file.
    record.modelPath = model.path === '' ? null : model.path;
    record.aliases = record.group?.membership.role === 'shard' ? new Set() : modelAliases(record.spec, model.name, record.modelPath);
  }

  /** The download or load moved; a starting worker that stops moving has stalled. */
  progressed(id: string, progress: WorkerProgress): void {
    const record = this.#record(id);
    record.progress = {...progress};
    record.lastProgressAt = new Date();
  }

  /** Memory admission counted for it while it loads. */
  reserved(id: string, bytes: number): void {
    this.#record(id).reservedBytes = bytes;
  }

  /** A process was started for it (pid null: the launch itself failed; its end follows). */
  launched(id: string, pid: number | null): void {
    const record = this.#record(id);
    record.pid = pid;
    record.launchedAt = new Date();
    record.lastHeartbeatAt = null;
    this.#persist(record);
  }

  /** A re-adopted worker's process was found alive (`true`), or gone. */
  adopted(id: string, alive: boolean): void {
    const record = this.#record(id);
    if (alive) {
      record.reason = 're-adopted after a hive restart; waiting for its heartbeat';
      this.#persist(record);
    } else {
      record.pid = null;
      this.setState(id, 'failed', 'gone when the hive restarted');
    }
  }

  /**
   * A heartbeat that proved the worker's secret. A re-adopted worker's secret was known only by
   * its hash: its key to the worker port comes from the one it just proved.
   */
  heartbeat(id: string, heartbeat: Heartbeat, provenSecret: string): WorkerView {
    const record = this.#record(id);
    record.secret ??= provenSecret;
    record.lastHeartbeat = heartbeat;
    record.lastHeartbeatAt = new Date();
    if (heartbeat.available_models !== undefined && record.group?.membership.role !== 'shard') {
      // A multi-model worker answers for the names it lists as well as for the model it was spawned with.
      record.aliases = new Set([...modelAliases(record.spec, record.modelName, record.modelPath), ...heartbeat.available_models]);
    }
    return record;
  }

  /** The worker's first sign of serving after a (re)start: what described the load is cleared. */
  serving(id: string): void {
    const record = this.#record(id);
    record.progress = null;
    record.reservedBytes = 0;
    record.reason = null;
    record.lastFailure = null;
    record.lastActiveAt = new Date();
  }

  /** A request routed to it; returns the one call that counts it out again. */
  requestStarted(id: string): () => void {
    const record = this.#record(id);
    record.inFlight++;
    record.requestsRouted++;
    record.lastActiveAt = new Date();
    let done = false;
    return () => {
      if (!done) {
        done = true;
        record.inFlight = Math.max(0, record.inFlight - 1);
        record.lastActiveAt = new Date();
      }
    };
  }

  /** Asked to drain: it finishes what it has and gets nothing new. */
  drain(id: string): void {
    this.#record(id).draining = true;
  }

  /** Moves it to `state` (with the reason, when given); persisted and announced only when something changed. */
  setState(id: string, state: WorkerState, reason?: string): boolean {
    const record = this.#record(id);
    const changed = record.state !== state || (reason !== undefined && record.reason !== reason);
    record.state = state;
    if (reason !== undefined) {
      record.reason = reason;
    }
    if (changed) {
      this.#announce(record, 'state');
    }
    return changed;
  }

  /** Its process is over: nothing of that process's is left on the record. `failure` is why, when it failed. */
  ended(id: string, failure: string | null): void {
    const record = this.#record(id);
    record.pid = null;
    record.inFlight = 0;
    record.draining = false;
    record.reservedBytes = 0;
    if (failure !== null) {
      record.lastFailure = failure;
    }
  }

  /** Laid out again for another process: a fresh port (and group tie, for a group member), every per-process field reset. */
  relaunching(id: string, next: {port: number; reason: string; group?: GroupMember}): void {
    const record = this.#record(id);
    record.port = next.port;
    if (next.group !== undefined) {
      record.group = next.group;
    }
    record.state = 'starting';
    record.reason = next.reason;
    record.restarts++;
    record.lastProgressAt = new Date();
    record.launchedAt = null;
    record.lastHeartbeat = null;
    record.lastHeartbeatAt = null;
    record.progress = null;
    this.#announce(record, 'restart');
  }

  /** The heartbeat secret for its next process (a re-adopted worker that never proved its own gets a fresh one). */
  secretForLaunch(id: string): string {
    const record = this.#record(id);
    if (record.secret === null) {
      renewSecret(record, randomSecret());
    }
    return record.secret!;
  }

  /** The key a worker's own port demands, issuing its secret first if need be (a coordinator needs its shards' keys). */
  keyForLaunch(id: string): string {
    this.secretForLaunch(id);
    return workerKey(this.#record(id))!;
  }

  #record(id: string): WorkerRecord {
    const record = this.#records.get(id);
    if (record === undefined) {
      throw new RbeeError('worker_not_found', `no worker "${id}" on this hive`);
    }
    return record;
  }

  #announce(record: WorkerRecord, type: WorkerChange['type']): void {
    this.#persist(record);
    this.#options.onChange({type, worker: record});
  }

  #persist(record: WorkerRecord): void {
    this.#options.store.save(toStoredWorker(record));
  }
}
