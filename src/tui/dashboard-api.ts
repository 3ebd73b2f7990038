/**
 * Everything the dashboard asks of a hive, as one interface: the event stream, status, stop and
 * spawn over the HTTP API, and a worker's log. The real one wraps the protocol's HiveClient; tests and the
 * benchmark pass their own.
 */
import fs from 'node:fs/promises';
import path from 'node:path';
import type {HiveClient} from '../protocol/hive-client.js';
import {isLoopbackUrl} from '../http/loopback.js';
import {eventStallMs, type GroupInfo, type HiveStatus, type SpawnGroupRequestInput, type SpawnWorkerRequestInput, type WorkerInfo} from '../protocol/wire.js';
import {printable} from './format.js';

export type LogTail = {
  /** The file read, or the path it would have on the hive's machine. */
  path: string;
  lines: string[];
  /** Where the lines come from, or why there are none. */
  note: string;
};

export type DashboardApi = {
  readonly url: string;
  /** Follows GET /v1/events, calling `onData` with each SSE data payload, until the stream ends or `signal` aborts. */
  subscribe(onData: (data: string) => void, signal: AbortSignal): Promise<void>;
  status(): Promise<HiveStatus>;
  stopWorker(id: string): Promise<WorkerInfo>;
  spawnWorker(request: SpawnWorkerRequestInput): Promise<WorkerInfo>;
  stopGroup(id: string): Promise<GroupInfo>;
  spawnGroup(request: SpawnGroupRequestInput): Promise<GroupInfo>;
  workerLog(id: string, lines: number): Promise<LogTail>;
};

/**
 * What `rbee worker spawn` would send to start the same worker again: its model (the resolved file
 * when the hive has one), device, type and restart policy, and the thread count it reported.
 * Context size and parallelism are not in WorkerInfo: the new worker gets the defaults.
 */
export function restartRequest(worker: WorkerInfo): SpawnWorkerRequestInput {
  return {
    model: worker.model_path ?? worker.model,
    device: worker.device,
    type: worker.type,
    restart: worker.restart,
    ...(worker.context_size === null ? {} : {context_size: worker.context_size}),
    ...(worker.parallel === null ? {} : {parallel: worker.parallel}),
    ...(worker.max_queue === null ? {} : {max_queue: worker.max_queue}),
    ...(worker.threads !== null ? {threads: worker.threads} : worker.last_heartbeat?.threads === undefined ? {} : {threads: worker.last_heartbeat.threads}),
  };
}

/**
 * What `rbee worker spawn-group` would send to start the same group again: the coordinator's model
 * file, the group's devices, type and restart policy, and the shape its coordinator was spawned with.
 * Its coordinator port is not kept: GroupInfo does not say whether one was asked for.
 */
export function groupRestartRequest(group: GroupInfo, coordinator: WorkerInfo | undefined): SpawnGroupRequestInput {
  return {
    model: coordinator?.model_path ?? group.model,
    devices: group.devices,
    type: group.type,
    restart: group.restart,
    ...(coordinator?.context_size == null ? {} : {context_size: coordinator.context_size}),
    ...(coordinator?.parallel == null ? {} : {parallel: coordinator.parallel}),
    ...(coordinator?.threads == null ? {} : {threads: coordinator.threads}),
  };
}

/** The last `count` lines of a file, reading at most its last 64 KiB. */
export async function tailFile(file: string, count: number): Promise<string[]> {
  const handle = await fs.open(file, 'r');
  try {
    const {size} = await handle.stat();
    const length = Math.min(size, 64 * 1024);
    const buffer = Buffer.alloc(length);
    await handle.read(buffer, 0, length, size - length);
    const lines = buffer.toString('utf8').split(/\r?\n/);
    if (length < size) {
      lines.shift(); // a partial first line
    }
    while (lines.length > 0 && lines.at(-1) === '') {
      lines.pop();
    }
    return lines.slice(-count).map(printable);
  } finally {
    await handle.close();
  }
}

export function hiveDashboardApi(client: HiveClient, options: {home: string}): DashboardApi {
  const local = isLoopbackUrl(client.url);
  return {
    url: client.url,
    async subscribe(onData, signal) {
      for await (const data of client.eventData({signal, stallMs: eventStallMs})) {
        onData(data);
      }
    },
    status: () => client.status(),
    stopWorker: id => client.stopWorker(id, {timeoutMs: 120_000}),
    spawnWorker: request => client.spawnWorker(request),
    stopGroup: id => client.stopGroup(id, {timeoutMs: 120_000}),
    spawnGroup: request => client.spawnGroup(request),
    async workerLog(id, lines) {
      const file = path.join(options.home, 'logs', `${id}.log`);
      if (!local) {
        return {path: file, lines: [], note: `the hive is remote and has no log API yet: on its machine, see <RBEE_HOME>/logs/${id}.log`};
      }
      try {
        return {path: file, lines: await tailFile(file, lines), note: `local hive: read from ${file}`};
      } catch (error) {
        const reason = (error as NodeJS.ErrnoException).code === 'ENOENT' ? "no such file (is RBEE_HOME the hive's?)" : (error as Error).message;
        return {path: file, lines: [], note: `local hive: ${file}: ${reason}`};
      }
    },
  };
}
