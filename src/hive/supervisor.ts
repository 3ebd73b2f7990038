/**
 * Starts, watches and stops worker processes. Each worker runs in its own process group
 * (detached), so a stop takes its engine grandchildren with it; the hive learns of a death from
 * the process exit at once, and of a hang from missed heartbeats.
 */
import {randomBytes, randomUUID} from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import {fileURLToPath} from 'node:url';
import {spawn, type ChildProcess} from 'node:child_process';
import {RbeeError} from '../errors.js';
import {parseModelRef} from '../models/model-ref.js';
import {resolveModel, type ResolvedModel} from '../models/resolve-model.js';
import type {DeviceInfo, SpawnWorkerRequest} from '../protocol/wire.js';
import {freePort} from './free-port.js';
import {isAlive, type WorkerRecord} from './worker-record.js';

const rbeeBin = fileURLToPath(new URL('../../bin/rbee.js', import.meta.url));

export const workerTypes = ['llamacpp'] as const;

export type SupervisorOptions = {
  hiveUrl: () => string;
  modelsDir: string;
  logsDir: string;
  devices: DeviceInfo[];
  heartbeatIntervalMs: number;
  /** SIGTERM, then this long to finish in-flight work, then SIGKILL of the whole group. */
  stopGraceMs: number;
  defaults: {contextSize?: number | undefined; threads?: number | undefined; parallel?: number | undefined};
  env?: NodeJS.ProcessEnv;
  log: (message: string) => void;
};

export class Supervisor {
  readonly workers = new Map<string, WorkerRecord>();
  readonly #options: SupervisorOptions;
  readonly #exits = new Map<string, Promise<void>>();
  readonly #watchdog: NodeJS.Timeout;

  constructor(options: SupervisorOptions) {
    this.#options = options;
    fs.mkdirSync(options.logsDir, {recursive: true});
    this.#watchdog = setInterval(() => this.#checkHeartbeats(), Math.max(50, Math.floor(options.heartbeatIntervalMs / 2)));
    this.#watchdog.unref();
  }

  /** Validates the request, records the worker and starts it; the answer does not wait for the model to load. */
  async spawn(spec: SpawnWorkerRequest): Promise<WorkerRecord> {
    if (!(workerTypes as readonly string[]).includes(spec.type)) {
      throw new RbeeError('invalid_request', `unknown worker type "${spec.type}": available types are ${workerTypes.join(', ')}`);
    }
    if (!this.#options.devices.some(device => device.id === spec.device)) {
      const known = this.#options.devices.map(device => device.id).join(', ');
      throw new RbeeError('device_unknown', `unknown device "${spec.device}": this machine has ${known}`);
    }
    const reference = parseModelRef(spec.model);
    // A local file is checked before answering, so a typo is a 4xx and not a failed worker.
    const local = reference.kind === 'path'
      ? await resolveModel(spec.model, {modelsDir: this.#options.modelsDir, ...this.#envOption()})
      : null;
    const record: WorkerRecord = {
      id: `worker-${randomUUID().slice(0, 8)}`,
      spec,
      modelName: local?.name ?? spec.model,
      modelPath: local?.path ?? null,
      aliases: new Set([spec.model]),
      state: 'starting',
      reason: null,
      pid: null,
      port: await freePort(),
      secret: randomBytes(24).toString('hex'),
      startedAt: new Date(),
      launchedAt: null,
      lastHeartbeatAt: null,
      lastHeartbeat: null,
      progress: null,
      inFlight: 0,
    };
    this.workers.set(record.id, record);
    this.#exits.set(record.id, this.#prepareAndLaunch(record, local));
    return record;
  }

  get(id: string): WorkerRecord {
    const record = this.workers.get(id);
    if (record === undefined) {
      throw new RbeeError('worker_not_found', `no worker "${id}" on this hive`);
    }
    return record;
  }

  verifySecret(record: WorkerRecord, secret: string | undefined): boolean {
    if (secret === undefined || secret.length !== record.secret.length) {
      return false;
    }
    let difference = 0;
    for (let index = 0; index < secret.length; index++) {
      difference |= secret.charCodeAt(index) ^ record.secret.charCodeAt(index);
    }
    return difference === 0;
  }

  fail(record: WorkerRecord, reason: string): void {
    if (!isAlive(record.state)) {
      return;
    }
    this.#options.log(`${record.id} failed: ${reason}`);
    record.state = 'failed';
    record.reason = reason;
    this.#killGroup(record, 'SIGKILL');
  }

  /** SIGTERM to the worker's group, SIGKILL after the grace period; resolves once the process is gone. */
  async stop(id: string, reason = 'stopped by request'): Promise<WorkerRecord> {
    const record = this.get(id);
    if (isAlive(record.state)) {
      record.state = 'stopping';
      record.reason = reason;
      this.#killGroup(record, 'SIGTERM');
      const escalation = setTimeout(() => this.#killGroup(record, 'SIGKILL'), this.#options.stopGraceMs);
      await this.#exits.get(id);
      clearTimeout(escalation);
    }
    return record;
  }

  async stopAll(reason: string): Promise<void> {
    clearInterval(this.#watchdog);
    await Promise.all([...this.workers.values()].filter(record => isAlive(record.state)).map(record => this.stop(record.id, reason)));
  }

  async #prepareAndLaunch(record: WorkerRecord, local: ResolvedModel | null): Promise<void> {
    let model = local;
    if (model === null) {
      try {
        model = await resolveModel(record.spec.model, {
          modelsDir: this.#options.modelsDir,
          ...this.#envOption(),
          onProgress: progress => {
            record.progress = {phase: progress.phase, done: progress.done, total: progress.total};
          },
        });
      } catch (error) {
        record.state = 'failed';
        record.reason = `model ${record.spec.model}: ${(error as Error).message}`;
        this.#options.log(`${record.id} failed: ${record.reason}`);
        return;
      }
    }
    record.modelName = model.name;
    record.modelPath = model.path;
    record.aliases = new Set([record.spec.model, model.name, model.path, path.basename(model.path)]);
    if (record.state !== 'starting') {
      return; // stopped while the model downloaded
    }
    record.progress = {phase: 'loading', done: 0, total: null};
    await this.#launch(record, model);
  }

  async #launch(record: WorkerRecord, model: ResolvedModel): Promise<void> {
    const {spec} = record;
    const defaults = this.#options.defaults;
    const args = [
      rbeeBin, 'worker', 'run',
      '--type', spec.type,
      '--worker-id', record.id,
      '--model-path', model.path,
      '--model-name', model.name,
      '--device', spec.device,
      '--port', String(record.port),
      '--hive-url', this.#options.hiveUrl(),
      '--heartbeat-interval', String(spec.heartbeat_interval_ms ?? this.#options.heartbeatIntervalMs),
    ];
    const contextSize = spec.context_size ?? defaults.contextSize;
    const threads = spec.threads ?? defaults.threads;
    const parallel = spec.parallel ?? defaults.parallel;
    if (contextSize !== undefined) args.push('--context-size', String(contextSize));
    if (threads !== undefined) args.push('--threads', String(threads));
    if (parallel !== undefined) args.push('--parallel', String(parallel));

    const cuda = /^cuda:(\d+)$/.exec(spec.device);
    const logFile = path.join(this.#options.logsDir, `${record.id}.log`);
    const logFd = fs.openSync(logFile, 'a');
    let child: ChildProcess;
    try {
      // An argument array, never a shell. A log file descriptor, not a pipe, so the worker does not
      // die of a broken pipe when the hive goes away (execa's typings admit only fds 1 and 2 here).
      child = spawn(process.execPath, args, {
        detached: true,
        stdio: ['ignore', logFd, logFd],
        env: {
          ...(this.#options.env ?? process.env),
          RBEE_WORKER_SECRET: record.secret,
          ...(cuda === null ? {} : {CUDA_VISIBLE_DEVICES: cuda[1]}),
        },
      });
    } finally {
      fs.closeSync(logFd);
    }
    record.pid = child.pid ?? null;
    record.launchedAt = new Date();
    this.#options.log(`${record.id} launched: pid ${record.pid}, ${model.name} on ${spec.device}, port ${record.port}, log ${logFile}`);
    const [exitCode, signal] = await new Promise<[number | null, NodeJS.Signals | null]>(resolve => {
      child.once('error', error => {
        record.reason = `could not start: ${error.message}`;
        resolve([null, null]);
      });
      child.once('exit', (code, exitSignal) => resolve([code, exitSignal]));
    });
    this.#onExit(record, exitCode ?? undefined, signal, logFile);
  }

  #onExit(record: WorkerRecord, exitCode: number | undefined, signal: string | null, logFile: string): void {
    // The group may still hold grandchildren (an engine subprocess): take them down too.
    this.#killGroup(record, 'SIGKILL');
    const how = signal === null ? `exited with code ${exitCode}` : `killed by ${signal}`;
    if (record.state === 'stopping') {
      record.state = 'stopped';
      this.#options.log(`${record.id} stopped (${how})`);
      return;
    }
    if (record.state === 'failed') {
      return;
    }
    const lastError = record.lastHeartbeat?.error;
    record.state = 'failed';
    record.reason = `${how}${lastError === undefined ? '' : `: ${lastError}`} (log: ${logFile})`;
    this.#options.log(`${record.id} failed: ${record.reason}`);
  }

  #killGroup(record: WorkerRecord, signal: NodeJS.Signals): void {
    if (record.pid === null) {
      return;
    }
    try {
      process.kill(-record.pid, signal);
    } catch {
      // The group is already gone.
    }
  }

  /** Three missed heartbeats mark a live but silent worker failed; it is then killed, never routed to. */
  #checkHeartbeats(): void {
    const now = Date.now();
    for (const record of this.workers.values()) {
      if (!isAlive(record.state) || record.state === 'stopping' || record.launchedAt === null) {
        continue;
      }
      const interval = record.spec.heartbeat_interval_ms ?? this.#options.heartbeatIntervalMs;
      const last = (record.lastHeartbeatAt ?? record.launchedAt).getTime();
      // Before its first heartbeat a worker is still starting Node and binding its port.
      const limit = record.lastHeartbeatAt === null ? Math.max(3 * interval, 15_000) : 3 * interval + 1_000;
      if (now - last > limit) {
        this.fail(record, `missed 3 heartbeats (none for ${now - last} ms)`);
      }
    }
  }

  #envOption(): {env?: NodeJS.ProcessEnv} {
    return this.#options.env === undefined ? {} : {env: this.#options.env};
  }
}
