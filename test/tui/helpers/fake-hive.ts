/**
 * A hive for the TUI tests, without a hive: worker and heartbeat fixtures, and a DashboardApi
 * whose event stream the test drives (emit, end, refuse) and whose calls it records.
 */
import type {GroupInfo, Heartbeat, HiveEvent, HiveStatus, SpawnGroupRequestInput, SpawnWorkerRequestInput, WorkerInfo} from '../../../src/protocol/wire.js';
import type {DashboardApi, LogTail} from '../../../src/tui/dashboard-api.js';
import {workerInfo} from '../../helpers/wire-fixtures.js';

export {workerInfo};

export const t0 = Date.parse('2026-11-27T12:00:00.000Z');
export const iso = (ms: number) => new Date(ms).toISOString();

export function heartbeat(fields: Partial<Heartbeat> & {worker_id: string}): Heartbeat {
  return {
    status: 'ready',
    model: 'gemma-3-270m-q4_k_m',
    device: 'cpu',
    vram_used: 0,
    vram_total: 0,
    ram_used: 700 * 1024 ** 2,
    requests_total: 3,
    tokens_generated: 120,
    uptime_seconds: 60,
    last_request_at: null,
    adapter_type: 'llama.cpp',
    backend: 'cpu',
    threads: 1,
    batch_size: 0,
    queue_depth: 0,
    throughput_tokens_per_second: 0,
    ...fields,
  };
}

/** A two-member group on cuda:0 (coordinator `<id>-0`) and cuda:1 (shard `<id>-1`). */
export function groupInfo(id: string, fields: Partial<GroupInfo> = {}): GroupInfo {
  return {
    group_id: id,
    coordinator: {worker_id: `${id}-0`, device: 'cuda:0', port: 9001, role: 'coordinator'},
    workers: [{worker_id: `${id}-1`, device: 'cuda:1', role: 'shard'}],
    total_vram: 0,
    model_vram: 0,
    restart: 'on-failure',
    restarts: 0,
    model: 'gemma-3-270m-q4_k_m',
    type: 'llamacpp',
    devices: ['cuda:0', 'cuda:1'],
    health: 'healthy',
    reason: null,
    url: 'http://127.0.0.1:9001',
    started_at: iso(t0),
    ...fields,
  };
}

export function snapshot(workers: WorkerInfo[], at = t0, groups: GroupInfo[] = []): HiveEvent {
  return {type: 'snapshot', at: iso(at), hive: {url: 'http://127.0.0.1:7833', pid: 100, version: '0.1.0'}, workers, groups};
}

export function heartbeatEvent(fields: Partial<Heartbeat> & {worker_id: string}, at: number): HiveEvent {
  return {type: 'heartbeat', at: iso(at), worker_id: fields.worker_id, heartbeat: heartbeat(fields)};
}

export const hiveStatus: HiveStatus = {
  version: '0.1.0',
  pid: 100,
  uptime_seconds: 5,
  url: 'http://127.0.0.1:7833',
  workers: {},
  models: [],
  devices: [{id: 'cpu', name: 'Test CPU', memory_total: 16 * 1024 ** 3, memory_used: 4 * 1024 ** 3}],
};

type Connection = {onData: (data: string) => void; end: () => void};

export type FakeHive = DashboardApi & {
  /** Snapshots handed to successive connections (the last one repeats). */
  snapshots: HiveEvent[];
  /** While set, every connection attempt fails with this message. */
  refuse: string | null;
  connections: number;
  emit(event: HiveEvent): void;
  /** Ends the current stream, as a stopping hive does. */
  end(): void;
  stops: string[];
  spawns: SpawnWorkerRequestInput[];
  groupStops: string[];
  groupSpawns: SpawnGroupRequestInput[];
  logs: Record<string, LogTail>;
  /** Stop calls wait for this before answering, when set. */
  holdStops: Promise<void> | null;
};

export function fakeHive(workers: WorkerInfo[], options: {url?: string} = {}): FakeHive {
  let current: Connection | null = null;
  const hive: FakeHive = {
    url: options.url ?? 'http://127.0.0.1:7833',
    snapshots: [snapshot(workers)],
    refuse: null,
    connections: 0,
    stops: [],
    spawns: [],
    groupStops: [],
    groupSpawns: [],
    logs: {},
    holdStops: null,
    emit(event) {
      current?.onData(JSON.stringify(event));
    },
    end() {
      current?.end();
    },
    subscribe(onData, signal) {
      if (hive.refuse !== null) {
        return Promise.reject(new Error(hive.refuse));
      }
      hive.connections++;
      const first = hive.snapshots[Math.min(hive.connections - 1, hive.snapshots.length - 1)]!;
      return new Promise<void>(resolve => {
        const end = () => {
          if (current?.end === end) {
            current = null;
          }
          resolve();
        };
        current = {onData, end};
        signal.addEventListener('abort', end, {once: true});
        setImmediate(() => onData(JSON.stringify(first)));
      });
    },
    async status() {
      return hiveStatus;
    },
    async stopWorker(id) {
      hive.stops.push(id);
      if (hive.holdStops !== null) {
        await hive.holdStops;
      }
      return workerInfo({worker_id: id, state: 'stopped', reason: 'stopped by request'});
    },
    async spawnWorker(request) {
      hive.spawns.push(request);
      return workerInfo({worker_id: `worker-new${hive.spawns.length}`, state: 'starting', model: request.model});
    },
    async stopGroup(id) {
      hive.groupStops.push(id);
      return {...groupInfo(id), health: 'stopped', reason: 'group stopped by request'};
    },
    async spawnGroup(request) {
      hive.groupSpawns.push(request);
      return {...groupInfo(`group-new${hive.groupSpawns.length}`), health: 'starting'};
    },
    async workerLog(id, lines) {
      const log = hive.logs[id] ?? {path: `/tmp/logs/${id}.log`, lines: [], note: 'no log'};
      return {...log, lines: log.lines.slice(-lines)};
    },
  };
  return hive;
}
