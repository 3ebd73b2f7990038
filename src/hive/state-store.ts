/**
 * The hive's memory across restarts, in SQLite under RBEE_HOME: every worker's spec, pid, port and
 * the sha256 of its heartbeat secret, so a hive that comes back can re-adopt the workers still alive
 * instead of restarting them. The secret itself is never stored: a re-adopted worker proves it by
 * its next heartbeat. The file (and SQLite's -wal and -shm, which take its mode) is 0600.
 */
import Database from 'better-sqlite3';
import {ensurePrivateFile} from '../config/private-home.js';
import {sha256Hex} from '../http/secrets.js';
import {parseWire} from '../protocol/parse.js';
import {z} from 'zod';
import type {WorkerView} from './worker-record.js';
import {
  GroupMembershipSchema,
  SpawnGroupRequestSchema,
  WorkerSpecSchema,
  WorkerStateSchema,
  type SpawnWorkerRequest,
  type WorkerState,
} from '../protocol/wire.js';

/** A group member's tie to its group, enough to rebuild the group when a restarted hive re-adopts it. */
const StoredGroupSchema = z.object({
  membership: GroupMembershipSchema,
  spec: SpawnGroupRequestSchema.required({type: true}),
  started_at: z.string(),
  model_bytes: z.number().int().nonnegative(),
  total_bytes: z.number().int().nonnegative(),
});
export type StoredGroup = z.infer<typeof StoredGroupSchema>;

export type StoredWorker = {
  id: string;
  spec: SpawnWorkerRequest;
  modelName: string;
  modelPath: string | null;
  state: WorkerState;
  reason: string | null;
  pid: number | null;
  port: number;
  /** sha256 (hex) of the worker's heartbeat secret. */
  secretHash: string;
  startedAt: string;
  restarts: number;
  group: StoredGroup | null;
};

type Row = {
  id: string;
  spec: string;
  model_name: string;
  model_path: string | null;
  state: string;
  reason: string | null;
  pid: number | null;
  port: number;
  secret: string;
  secret_sha256: string | null;
  started_at: string;
  restarts: number;
  group_json: string | null;
};

export class StateStore {
  readonly #file: string;
  #db: Database.Database | null = null;
  #upsert: Database.Statement | null = null;
  #closed = false;

  /** Nothing is opened yet: the file is created or read on first use. */
  constructor(file: string) {
    this.#file = file;
  }

  #open(): {db: Database.Database; upsert: Database.Statement} {
    if (this.#db !== null && this.#upsert !== null) {
      return {db: this.#db, upsert: this.#upsert};
    }
    if (this.#closed) {
      throw new Error('the state store is closed');
    }
    // SQLite creates -wal and -shm with the database's own mode: making it 0600 first covers all three.
    ensurePrivateFile(this.#file);
    const db = new Database(this.#file);
    db.pragma('journal_mode = WAL');
    db.pragma('busy_timeout = 2000');
    // Freed pages are zeroed, so a secret migrated away below leaves no copy in the file.
    db.pragma('secure_delete = on');
    db.exec(`create table if not exists workers (
      id text primary key,
      spec text not null,
      model_name text not null,
      model_path text,
      state text not null,
      reason text,
      pid integer,
      port integer not null,
      secret text not null,
      started_at text not null,
      restarts integer not null default 0,
      updated_at text not null
    )`);
    const columns = db.prepare('pragma table_info(workers)').all() as Array<{name: string}>;
    // Databases from before worker groups lack the column.
    if (!columns.some(column => column.name === 'group_json')) {
      db.exec('alter table workers add column group_json text');
    }
    // Databases from before hashed secrets held them in plain text: hash them and blank the old column.
    if (!columns.some(column => column.name === 'secret_sha256')) {
      db.exec('alter table workers add column secret_sha256 text');
    }
    const plain = db.prepare(`select id, secret from workers where secret != ''`).all() as Array<{id: string; secret: string}>;
    if (plain.length > 0) {
      const migrate = db.prepare(`update workers set secret_sha256 = ?, secret = '' where id = ?`);
      db.transaction(() => plain.forEach(row => migrate.run(sha256Hex(row.secret), row.id)))();
      db.pragma('wal_checkpoint(TRUNCATE)');
    }
    const upsert = db.prepare(`insert into workers
      (id, spec, model_name, model_path, state, reason, pid, port, secret, secret_sha256, started_at, restarts, group_json, updated_at)
      values (@id, @spec, @model_name, @model_path, @state, @reason, @pid, @port, '', @secret_sha256, @started_at, @restarts, @group_json, @updated_at)
      on conflict(id) do update set spec = excluded.spec, model_name = excluded.model_name, model_path = excluded.model_path,
        state = excluded.state, reason = excluded.reason, pid = excluded.pid, port = excluded.port, secret = '',
        secret_sha256 = excluded.secret_sha256, restarts = excluded.restarts, group_json = excluded.group_json, updated_at = excluded.updated_at`);
    this.#db = db;
    this.#upsert = upsert;
    return {db, upsert};
  }

  save(worker: StoredWorker): void {
    this.#open().upsert.run({
      id: worker.id,
      spec: JSON.stringify(worker.spec),
      model_name: worker.modelName,
      model_path: worker.modelPath,
      state: worker.state,
      reason: worker.reason,
      pid: worker.pid,
      port: worker.port,
      secret_sha256: worker.secretHash,
      started_at: worker.startedAt,
      restarts: worker.restarts,
      group_json: worker.group === null ? null : JSON.stringify(worker.group),
      updated_at: new Date().toISOString(),
    });
  }

  /** Workers a previous hive left running (not stopped or failed). Rows that no longer parse are skipped. */
  loadLive(): StoredWorker[] {
    const rows = this.#open().db.prepare(`select * from workers where state not in ('stopped', 'failed')`).all() as Row[];
    const workers: StoredWorker[] = [];
    for (const row of rows) {
      const spec = parseWire(WorkerSpecSchema, safeJson(row.spec), 'stored spec');
      const state = WorkerStateSchema.safeParse(row.state);
      const group = row.group_json === null ? null : parseWire(StoredGroupSchema, safeJson(row.group_json), 'stored group');
      // A row without a secret hash could never be re-adopted: its worker could not prove who it is.
      if (!spec.ok || !state.success || (group !== null && !group.ok) || row.secret_sha256 === null) {
        continue;
      }
      workers.push({
        id: row.id,
        spec: spec.value,
        modelName: row.model_name,
        modelPath: row.model_path,
        state: state.data,
        reason: row.reason,
        pid: row.pid,
        port: row.port,
        secretHash: row.secret_sha256,
        startedAt: row.started_at,
        restarts: row.restarts,
        group: group === null ? null : group.value,
      });
    }
    return workers;
  }

  close(): void {
    this.#closed = true;
    this.#db?.close();
    this.#db = null;
  }
}

function safeJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return null;
  }
}

export function toStoredWorker(record: WorkerView): StoredWorker {
  const group = record.group;
  return {
    id: record.id,
    spec: record.spec,
    modelName: record.modelName,
    modelPath: record.modelPath,
    state: record.state,
    reason: record.reason,
    pid: record.pid,
    port: record.port,
    secretHash: record.secretHash,
    startedAt: record.startedAt.toISOString(),
    restarts: record.restarts,
    group:
      group === null
        ? null
        : {
            membership: group.membership,
            spec: group.group.spec,
            started_at: group.group.startedAt.toISOString(),
            model_bytes: group.group.modelBytes,
            total_bytes: group.group.totalBytes,
          },
  };
}
