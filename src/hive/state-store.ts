/**
 * The hive's memory across restarts, in SQLite under RBEE_HOME: every worker's spec, pid, port and
 * secret, so a hive that comes back can re-adopt the workers still alive instead of restarting them.
 */
import Database from 'better-sqlite3';
import {parseWire} from '../protocol/parse.js';
import {z} from 'zod';
import type {WorkerRecord} from './worker-record.js';
import {GroupMembershipSchema, SpawnGroupRequestSchema, WorkerSpecSchema, WorkerStateSchema, type SpawnWorkerRequest, type WorkerState} from '../protocol/wire.js';

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
  secret: string;
  startedAt: string;
  restarts: number;
  group: StoredGroup | null;
};

type Row = {
  id: string; spec: string; model_name: string; model_path: string | null; state: string; reason: string | null;
  pid: number | null; port: number; secret: string; started_at: string; restarts: number; group_json: string | null;
};

export class StateStore {
  readonly #db: Database.Database;
  readonly #upsert: Database.Statement;

  constructor(file: string) {
    this.#db = new Database(file);
    this.#db.pragma('journal_mode = WAL');
    this.#db.pragma('busy_timeout = 2000');
    this.#db.exec(`create table if not exists workers (
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
    // Databases from before worker groups lack the column.
    const columns = this.#db.prepare('pragma table_info(workers)').all() as Array<{name: string}>;
    if (!columns.some(column => column.name === 'group_json')) {
      this.#db.exec('alter table workers add column group_json text');
    }
    this.#upsert = this.#db.prepare(`insert into workers
      (id, spec, model_name, model_path, state, reason, pid, port, secret, started_at, restarts, group_json, updated_at)
      values (@id, @spec, @model_name, @model_path, @state, @reason, @pid, @port, @secret, @started_at, @restarts, @group_json, @updated_at)
      on conflict(id) do update set spec = excluded.spec, model_name = excluded.model_name, model_path = excluded.model_path,
        state = excluded.state, reason = excluded.reason, pid = excluded.pid, port = excluded.port, secret = excluded.secret,
        restarts = excluded.restarts, group_json = excluded.group_json, updated_at = excluded.updated_at`);
  }

  save(worker: StoredWorker): void {
    this.#upsert.run({
      id: worker.id,
      spec: JSON.stringify(worker.spec),
      model_name: worker.modelName,
      model_path: worker.modelPath,
      state: worker.state,
      reason: worker.reason,
      pid: worker.pid,
      port: worker.port,
      secret: worker.secret,
      started_at: worker.startedAt,
      restarts: worker.restarts,
      group_json: worker.group === null ? null : JSON.stringify(worker.group),
      updated_at: new Date().toISOString(),
    });
  }

  /** Workers a previous hive left running (not stopped or failed). Rows that no longer parse are skipped. */
  loadLive(): StoredWorker[] {
    const rows = this.#db.prepare(`select * from workers where state not in ('stopped', 'failed')`).all() as Row[];
    const workers: StoredWorker[] = [];
    for (const row of rows) {
      const spec = parseWire(WorkerSpecSchema, safeJson(row.spec), 'stored spec');
      const state = WorkerStateSchema.safeParse(row.state);
      const group = row.group_json === null ? null : parseWire(StoredGroupSchema, safeJson(row.group_json), 'stored group');
      if (!spec.ok || !state.success || (group !== null && !group.ok)) {
        continue;
      }
      workers.push({
        id: row.id, spec: spec.value, modelName: row.model_name, modelPath: row.model_path, state: state.data,
        reason: row.reason, pid: row.pid, port: row.port, secret: row.secret, startedAt: row.started_at, restarts: row.restarts,
        group: group === null ? null : group.value,
      });
    }
    return workers;
  }

  close(): void {
    this.#db.close();
  }
}

function safeJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return null;
  }
}

export function toStoredWorker(record: WorkerRecord): StoredWorker {
  const group = record.group;
  return {
    id: record.id, spec: record.spec, modelName: record.modelName, modelPath: record.modelPath, state: record.state,
    reason: record.reason, pid: record.pid, port: record.port, secret: record.secret,
    startedAt: record.startedAt.toISOString(), restarts: record.restarts,
    group: group === null ? null : {
      membership: group.membership, spec: group.group.spec, started_at: group.group.startedAt.toISOString(),
      model_bytes: group.group.modelBytes, total_bytes: group.group.totalBytes,
    },
  };
}
