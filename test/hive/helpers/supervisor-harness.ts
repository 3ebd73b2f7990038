/**
 * The supervisor without processes: stand-in processes (launch, signal, watch) and a memory probe,
 * so each lifecycle transition is driven and checked directly, by the supervisor's tests and by
 * those of the modules that ask it to spawn and stop (models on demand).
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type {ExecutionContext} from 'ava';
import {StateStore} from '../../../src/hive/state-store.js';
import {Supervisor, type SupervisorEvent} from '../../../src/hive/supervisor.js';
import type {SpareWorkers} from '../../../src/hive/spare-workers.js';
import type {LaunchOptions, ProcessEnd, WatchedProcess, WorkerProcesses} from '../../../src/hive/worker-process.js';
import type {WorkerView} from '../../../src/hive/worker-record.js';
import {
  HeartbeatSchema,
  SpawnWorkerRequestSchema,
  type DeviceInfo,
  type Heartbeat,
  type SpawnWorkerRequestInput,
  type WorkerState,
} from '../../../src/protocol/wire.js';
import {writeTinyGguf} from '../../native/tiny-gguf.js';

export type FakeProcess = {pid: number; workerId: string; options: LaunchOptions; signals: NodeJS.Signals[]; exit: (end: ProcessEnd) => void; over: boolean};

/** Pids are unique across every stand-in, as they would be across hives of one machine. */
let nextPid = 40_000;

/** Processes that exist only in this table: each ends when the test says, or when signalled. */
export class FakeProcesses implements WorkerProcesses {
  readonly launched: FakeProcess[] = [];

  launch = (options: LaunchOptions): WatchedProcess => {
    let exit: (end: ProcessEnd) => void = () => undefined;
    const ended = new Promise<ProcessEnd>(resolve => {
      exit = resolve;
    });
    const process: FakeProcess = {
      pid: nextPid++,
      workerId: options.args[options.args.indexOf('--worker-id') + 1]!,
      options,
      signals: [],
      over: false,
      exit: end => {
        if (!process.over) {
          process.over = true;
          exit(end);
        }
      },
    };
    this.launched.push(process);
    return {pid: process.pid, ended};
  };

  isWorker = (pid: number, workerId: string): boolean => this.launched.some(item => item.pid === pid && item.workerId === workerId && !item.over);

  watch = (pid: number): WatchedProcess => {
    const process = this.launched.find(item => item.pid === pid)!;
    return {
      pid,
      ended: new Promise<ProcessEnd>(resolve => {
        const exit = process.exit;
        process.exit = end => {
          exit(end);
          resolve(end);
        };
      }),
    };
  };

  signal = (pid: number, signal: NodeJS.Signals): void => {
    const process = this.launched.find(item => item.pid === pid);
    process?.signals.push(signal);
    process?.exit({code: null, signal});
  };

  /** A process some earlier hive started, still running: only watching and signalling find it. */
  seed(pid: number, workerId: string): void {
    const process: FakeProcess = {
      pid,
      workerId,
      options: {command: '', args: [], env: {}, logFile: ''},
      signals: [],
      over: false,
      exit: end => {
        process.over = true;
        void end;
      },
    };
    this.launched.push(process);
  }

  of(workerId: string): FakeProcess[] {
    return this.launched.filter(item => item.workerId === workerId);
  }
}

export async function until(condition: () => boolean, what: string, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) {
      throw new Error(`timed out waiting for ${what}`);
    }
    await new Promise(resolve => setTimeout(resolve, 5));
  }
}

export type HarnessOptions = {
  freeBytes?: number | ((device: string) => number);
  home?: string;
  processes?: FakeProcesses;
  heartbeatIntervalMs?: number;
  devices?: DeviceInfo[];
  /** Worker types that may run groups (none by default). */
  groupTypes?: string[];
  /** Where the stand-in llamacpp type runs (the CPU only, by default). */
  backends?: Record<string, object>;
  /** Spare worker processes (a stand-in: the supervisor's calls are what a test reads). */
  spares?: SpareWorkers;
  /** Whether requests are held for a model's start (models on demand). */
  requestsHeld?: () => boolean;
};

export function setup(t: ExecutionContext, options: HarnessOptions = {}) {
  const home = options.home ?? fs.mkdtempSync(path.join(os.tmpdir(), 'rbee-supervisor-'));
  const model = path.join(home, 'tiny.gguf');
  if (!fs.existsSync(model)) {
    fs.renameSync(writeTinyGguf('llama'), model);
  }
  const store = new StateStore(path.join(home, 'hive.sqlite'));
  const processes = options.processes ?? new FakeProcesses();
  const events: SupervisorEvent[] = [];
  let nextPort = 30_000;
  const supervisor = new Supervisor({
    workerTypes: ['llamacpp'],
    groupTypes: options.groupTypes ?? [],
    workerTypeSupport: async () => [{type: 'llamacpp', backends: options.backends ?? {cpu: {}}}],
    modelFormats: {llamacpp: 'gguf'},
    engineOptions: {},
    engineModelTypes: [],
    modelsDir: path.join(home, 'models'),
    allowedModelDirs: null,
    devices: options.devices ?? [{id: 'cpu', name: 'test cpu', memory_total: 8 * 2 ** 30, memory_used: 0}],
    memoryProbe: async device => (typeof options.freeBytes === 'function' ? options.freeBytes(device) : (options.freeBytes ?? 8 * 2 ** 30)),
    hiveUrl: () => 'http://127.0.0.1:1',
    configPath: null,
    logsDir: path.join(home, 'logs'),
    linksDir: null,
    heartbeatIntervalMs: options.heartbeatIntervalMs ?? 200,
    orphanTimeoutMs: 600,
    missedHeartbeats: 3,
    loadStallTimeoutMs: 60_000,
    stopGraceMs: 1_000,
    restartLimits: {baseDelayMs: 10, maxDelayMs: 40, maxRestarts: 2, windowMs: 60_000},
    defaults: {},
    store,
    log: () => undefined,
    // Records are live objects: the log keeps each one as it was when announced.
    onEvent: event => events.push(event.type === 'group' ? event : {...event, record: {...event.record}}),
    processes,
    ports: async () => nextPort++,
    spares: options.spares,
    ...(options.requestsHeld === undefined ? {} : {requestsHeld: options.requestsHeld}),
  });
  let closed = false;
  const close = async () => {
    if (!closed) {
      closed = true;
      await supervisor.stopAll('test over');
      store.close();
    }
  };
  t.teardown(async () => {
    await close();
    if (options.home === undefined) {
      fs.rmSync(home, {recursive: true, force: true});
    }
  });
  const spawn = async (request: Partial<SpawnWorkerRequestInput> = {}) =>
    (await supervisor.spawn(SpawnWorkerRequestSchema.parse({model, device: 'cpu', type: 'llamacpp', ...request}))) as WorkerView;
  const beat = (worker: WorkerView, status: Heartbeat['status'], extra: Partial<Heartbeat> = {}) => {
    const launch = processes.of(worker.id).at(-1)!;
    return supervisor.heartbeat(HeartbeatSchema.parse({worker_id: worker.id, status, ...extra}), launch.options.env.RBEE_WORKER_SECRET);
  };
  const states = (id: string): WorkerState[] => events.flatMap(event => (event.type === 'state' && event.record.id === id ? [event.record.state] : []));
  return {supervisor, processes, events, spawn, beat, states, home, store, close, model};
}
