/**
 * Starts, watches, restarts and stops worker processes.
 *
 * States: starting -> ready <-> busy -> stopping -> stopped | failed, with the reason kept. The
 * hive learns of a death from the process exit at once, of a hang from missed heartbeats, and of a
 * stuck load from a load that stops making progress. What ends a worker decides, with its
 * restart policy, whether it comes back.
 */
import {randomUUID} from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import {fileURLToPath} from 'node:url';
import {RbeeError} from '../errors.js';
import {parseModelRef} from '../models/model-ref.js';
import type {ResolvedModel} from '../models/resolve-model.js';
import type {HiveCommand, SpawnGroupRequest, SpawnPlan, SpawnWorkerRequest, SpawnWorkerRequestBody} from '../protocol/wire.js';
import type {GroupRecord} from './group-record.js';
import {WorkerGroups} from './worker-groups.js';
import {workerRunArgs} from './worker-command-line.js';
import {admitOrThrow, checkAdapterOptions, checkTypeAndDevice, chooseWorkerType, planSpawn, resolveAllowedModel, type SpawnCheckOptions} from './spawn-checks.js';
import {freePort} from '../http/free-port.js';
import {judgeHealth} from './health-judge.js';
import {decideRestart, defaultRestartLimits, type EndKind, type RestartLimits} from './restart-policy.js';
import {toStoredWorker, type StateStore} from './state-store.js';
import {createWorkerRecord, isAlive, modelAliases, renewSecret, workerKey, type WorkerRecord} from './worker-record.js';
import {randomSecret} from '../http/secrets.js';
import {shardKeysVariable} from '../worker/worker-auth.js';
import {isWorkerProcess, killGroup, launchWorkerProcess, watchAdoptedProcess, type ProcessEnd} from './worker-process.js';

const rbeeBin = fileURLToPath(new URL('../../bin/rbee.js', import.meta.url));

/**
 * The hive's environment minus what a worker (and the engines and plugins it runs) must not see:
 * the API token, and any worker credential the hive itself was started with.
 */
export function workerEnvironment(env: NodeJS.ProcessEnv): NodeJS.ProcessEnv {
  const {RBEE_TOKEN: _token, RBEE_WORKER_SECRET: _secret, [shardKeysVariable]: _keys, ...rest} = env;
  return rest;
}

export type SupervisorOptions = SpawnCheckOptions & {
  /** Worker types whose adapter can run in a group (as coordinator or shard). */
  groupTypes: string[];
  hiveUrl: () => string;
  /** The hive's config file, passed to workers for their adapter plugins. */
  configPath: string | null;
  logsDir: string;
  heartbeatIntervalMs: number;
  /** A worker exits when its hive has not answered for this long (default: 3 intervals). */
  orphanTimeoutMs: number;
  /** A starting worker whose download or load shows no progress for this long has stalled. */
  loadStallTimeoutMs: number;
  /** SIGTERM, then this long to finish in-flight work, then SIGKILL of the whole group. */
  stopGraceMs: number;
  restartLimits?: RestartLimits;
  defaults: {contextSize?: number | undefined; threads?: number | undefined; parallel?: number | undefined; readyTimeoutMs?: number | undefined};
  store: StateStore;
  log: (message: string) => void;
  onEvent?: (event: SupervisorEvent) => void;
};

export type SupervisorEvent =
  | {type: 'spawned' | 'state' | 'restart'; record: WorkerRecord}
  | {type: 'group'; change: 'spawned' | 'health'; group: GroupRecord};

/** Why a worker's current process is ending, set by whoever ends it, read when it exits. */
type Ending = {kind: 'requested' | 'failure'; reason: string};

export class Supervisor {
  readonly workers = new Map<string, WorkerRecord>();
  readonly #groups: WorkerGroups;
  readonly #options: SupervisorOptions;
  readonly #endings = new Map<string, Ending>();
  readonly #runs = new Map<string, Promise<void>>();
  readonly #pendingCommands = new Map<string, HiveCommand[]>();
  readonly #restartTimers = new Map<string, NodeJS.Timeout>();
  readonly #watchdog: NodeJS.Timeout;

  constructor(options: SupervisorOptions) {
    this.#options = options;
    this.#groups = new WorkerGroups({
      workers: this.workers,
      planOptions: () => ({...this.#options, reservedOn: device => this.reservedOn(device, null)}),
      add: record => this.#add(record),
      relaunched: record => {
        this.#persist(record);
        this.#options.onEvent?.({type: 'restart', record});
      },
      run: (record, local) => this.#run(record, local),
      stop: (id, reason) => this.#stopOne(id, reason),
      ended: id => this.#runs.get(id),
      emit: group => this.#options.onEvent?.({type: 'group', change: 'health', group}),
      spawned: group => this.#options.onEvent?.({type: 'group', change: 'spawned', group}),
      log: message => this.#options.log(message),
      restartLimits: options.restartLimits ?? defaultRestartLimits,
    });
    fs.mkdirSync(options.logsDir, {recursive: true, mode: 0o700});
    // A fixed fine tick, not the hive's interval: a worker may heartbeat faster than the hive's default.
    this.#watchdog = setInterval(() => this.#watch(), Math.max(25, Math.min(250, Math.floor(options.heartbeatIntervalMs / 2))));
    this.#watchdog.unref();
  }

  /** Checks a spawn request; with `dry_run`, answers the plan; otherwise records the worker and starts it. */
  async spawn(request: SpawnWorkerRequestBody): Promise<WorkerRecord | SpawnPlan> {
    checkTypeAndDevice(request, this.#options);
    const spec: SpawnWorkerRequest = {...request, type: await chooseWorkerType(request, this.#options)};
    await checkAdapterOptions(spec, this.#options);
    const reference = parseModelRef(spec.model);
    // A local file is checked before answering, so a typo is a 4xx and not a failed worker.
    const local = reference.kind === 'path' ? await resolveAllowedModel(spec.model, spec.type, this.#options) : null;
    if (spec.dry_run) {
      return planSpawn(spec, local, this.reservedOn(spec.device, null), this.#options);
    }
    if (local !== null) {
      await admitOrThrow(spec, local.path, this.reservedOn(spec.device, null), this.#options);
    }
    const record = createWorkerRecord({
      id: `worker-${randomUUID().slice(0, 8)}`,
      spec,
      modelName: local?.name ?? spec.model,
      modelPath: local?.path ?? null,
      port: await freePort(),
      secret: randomSecret(),
    });
    this.#add(record);
    this.#run(record, local);
    return record;
  }

  /** Checks and records a worker group, then starts its shards and its coordinator (which waits for them). */
  spawnGroup(request: SpawnGroupRequest): Promise<GroupRecord> {
    return this.#groups.spawn(request);
  }

  getGroup(id: string): GroupRecord {
    return this.#groups.get(id);
  }

  /** Stops every member (coordinator first, so it lets go of its shards); resolves once all are gone. */
  stopGroup(id: string, reason = 'group stopped by request'): Promise<GroupRecord> {
    return this.#groups.stop(id, reason);
  }

  /** The hive's worker groups, by id. */
  get groups(): ReadonlyMap<string, GroupRecord> {
    return this.#groups.groups;
  }

  get(id: string): WorkerRecord {
    const record = this.workers.get(id);
    if (record === undefined) {
      throw new RbeeError('worker_not_found', `no worker "${id}" on this hive`);
    }
    return record;
  }

  /** Queues a command for the worker's next heartbeat answer. Shutdown and unload count as requested ends. */
  command(id: string, command: HiveCommand): WorkerRecord {
    const record = this.get(id);
    if (!isAlive(record.state)) {
      throw new RbeeError('worker_not_ready', `worker ${id} is ${record.state}`);
    }
    if (command.type === 'drain') {
      record.draining = true;
    }
    if (command.type === 'shutdown' || command.type === 'unload_model') {
      this.#endings.set(id, {kind: 'requested', reason: command.type === 'shutdown' ? `shutdown: ${command.reason ?? 'asked'}` : `unloaded ${command.model}`});
    }
    this.#pendingCommands.set(id, [...(this.#pendingCommands.get(id) ?? []), command]);
    return record;
  }

  /** Commands for a worker's heartbeat answer; a worker the hive gave up on is told to shut down. */
  takeCommands(record: WorkerRecord): HiveCommand[] {
    if (record.state === 'failed' || record.state === 'stopped') {
      return [{type: 'shutdown', reason: record.reason ?? record.state}];
    }
    const commands = this.#pendingCommands.get(record.id) ?? [];
    this.#pendingCommands.delete(record.id);
    return commands;
  }

  /** A heartbeat from the worker: the hive's view of its state follows the worker's own. */
  onHeartbeat(record: WorkerRecord): void {
    const heartbeat = record.lastHeartbeat;
    if (heartbeat === null || !isAlive(record.state) || record.state === 'stopping') {
      return;
    }
    if (heartbeat.status === 'error') {
      this.fail(record, heartbeat.error ?? 'worker reported an error');
    } else if (heartbeat.status === 'ready' || heartbeat.status === 'busy') {
      if (record.state === 'starting') {
        record.progress = null;
        record.reservedBytes = 0;
        record.reason = null;
        record.lastFailure = null;
      }
      this.#setState(record, heartbeat.status);
    } else if (heartbeat.status === 'starting' && heartbeat.load_progress !== undefined) {
      const done = Math.round(heartbeat.load_progress * 1000);
      if (record.progress?.phase !== 'loading' || record.progress.done !== done) {
        record.progress = {phase: 'loading', done, total: 1000};
        record.lastProgressAt = new Date();
      }
    }
    // The coordinator's heartbeat says whether it still reaches every shard.
    this.#groups.onMemberChange(record);
  }

  /** Ends the worker's process as a failure; the restart policy decides what follows. */
  fail(record: WorkerRecord, reason: string): void {
    if (!isAlive(record.state) || this.#endings.has(record.id)) {
      return;
    }
    this.#options.log(`${record.id} failing: ${reason}`);
    this.#endings.set(record.id, {kind: 'failure', reason});
    if (record.pid === null) {
      this.#end(record, 'failure', reason);
    } else {
      // Failed at once, not when the kernel has torn the process down: nothing is routed to it meanwhile.
      this.#setState(record, 'failed', reason);
      killGroup(record.pid, 'SIGKILL');
    }
  }

  /** Stops a worker; a member of a group stops its whole group, which cannot serve without it. */
  async stop(id: string, reason = 'stopped by request'): Promise<WorkerRecord> {
    const record = this.get(id);
    if (record.group !== null) {
      await this.stopGroup(record.group.group.id, `${reason} (member ${id})`);
      return record;
    }
    return this.#stopOne(id, reason);
  }

  /** SIGTERM to the worker's process group, SIGKILL after the grace period; resolves once the process is gone. */
  async #stopOne(id: string, reason: string): Promise<WorkerRecord> {
    const record = this.get(id);
    const pendingRestart = this.#restartTimers.get(id);
    if (pendingRestart !== undefined) {
      clearTimeout(pendingRestart);
      this.#restartTimers.delete(id);
      this.#end(record, 'requested', reason);
      return record;
    }
    if (isAlive(record.state)) {
      this.#endings.set(id, {kind: 'requested', reason});
      this.#setState(record, 'stopping', reason);
      if (record.pid === null) {
        // Still downloading: nothing to signal, the run sees the ending when the download returns.
        this.#end(record, 'requested', reason);
        return record;
      }
      killGroup(record.pid, 'SIGTERM');
      const escalation = setTimeout(() => record.pid !== null && killGroup(record.pid, 'SIGKILL'), this.#options.stopGraceMs);
      await this.#runs.get(id);
      clearTimeout(escalation);
    }
    return record;
  }

  async stopAll(reason: string): Promise<void> {
    clearInterval(this.#watchdog);
    this.#groups.markAllStopped(reason);
    await Promise.all([...this.workers.values()].filter(record => isAlive(record.state)).map(record => this.#stopOne(record.id, reason)));
  }

  /** After a hive restart: take back the workers a previous hive left running, restart none. */
  adoptFromStore(): {adopted: string[]; failed: string[]} {
    const adopted: string[] = [];
    const failed: string[] = [];
    const stored = this.#options.store.loadLive();
    // Every record first, then the liveness checks (groups are judged after them, see WorkerGroups.adoptAll).
    const records = stored.map(worker => {
      const record = createWorkerRecord({
        id: worker.id, spec: worker.spec, modelName: worker.modelName, modelPath: worker.modelPath, port: worker.port,
        secret: null, secretHash: worker.secretHash, pid: worker.pid, startedAt: new Date(worker.startedAt), launchedAt: new Date(),
        restarts: worker.restarts, adopted: true,
      });
      if (worker.group !== null) {
        record.group = {group: this.#groups.adopt(worker.group), membership: worker.group.membership};
        if (worker.group.membership.role === 'shard') {
          record.aliases = new Set();
        }
      }
      this.workers.set(record.id, record);
      return record;
    });
    this.#groups.adoptAll(() => {
      for (const record of records) {
        if (record.pid !== null && isWorkerProcess(record.pid, record.id)) {
          record.reason = 're-adopted after a hive restart; waiting for its heartbeat';
          const watched = watchAdoptedProcess(record.pid);
          this.#runs.set(record.id, watched.ended.then(end => this.#onProcessEnd(record, end, path.join(this.#options.logsDir, `${record.id}.log`))));
          this.#persist(record);
          adopted.push(record.id);
        } else {
          record.pid = null;
          this.#setState(record, 'failed', 'gone when the hive restarted');
          failed.push(record.id);
        }
      }
    });
    return {adopted, failed};
  }

  /** What starting workers on a device will still allocate: admission counts it as taken. */
  reservedOn(device: string, except: WorkerRecord | null): number {
    let reserved = 0;
    for (const record of this.workers.values()) {
      if (record !== except && record.state === 'starting' && record.spec.device === device) {
        reserved += record.reservedBytes;
      }
    }
    return reserved;
  }

  #run(record: WorkerRecord, local: ResolvedModel | null): void {
    const run = this.#prepareAndLaunch(record, local).catch(error => {
      this.#end(record, 'failure', `could not start: ${(error as Error).message}`);
    });
    this.#runs.set(record.id, run);
  }

  async #prepareAndLaunch(record: WorkerRecord, local: ResolvedModel | null): Promise<void> {
    if (record.group?.membership.role === 'shard') {
      // A shard's engine holds the layers its coordinator sends it: it opens no model file of its own.
      record.progress = {phase: 'loading', done: 0, total: 1000};
      record.lastProgressAt = new Date();
      await this.#launch(record, {ref: record.spec.model, kind: 'path', path: record.spec.model, name: record.modelName});
      return;
    }
    let model = local;
    if (model === null) {
      try {
        model = await resolveAllowedModel(record.spec.model, record.spec.type, this.#options, progress => {
          record.progress = {phase: progress.phase, done: progress.done, total: progress.total};
          record.lastProgressAt = new Date();
        });
      } catch (error) {
        this.#end(record, 'failure', `model ${record.spec.model}: ${(error as Error).message}`);
        return;
      }
      if (this.#endings.has(record.id) || !isAlive(record.state)) {
        return; // stopped or failed while the model downloaded
      }
      try {
        const verdict = await admitOrThrow(record.spec, model.path, this.reservedOn(record.spec.device, record), this.#options);
        record.reservedBytes = verdict.estimate.total;
      } catch (error) {
        this.#end(record, 'failure', (error as Error).message);
        return;
      }
    }
    record.modelName = model.name;
    record.modelPath = model.path;
    record.aliases = modelAliases(record.spec.model, model.name, model.path);
    record.progress = {phase: 'loading', done: 0, total: 1000};
    record.lastProgressAt = new Date();
    await this.#launch(record, model);
  }

  async #launch(record: WorkerRecord, model: ResolvedModel): Promise<void> {
    const {spec} = record;
    const args = [rbeeBin, ...workerRunArgs(record, model, this.#options)];

    const cuda = /^cuda:(\d+)$/.exec(spec.device);
    const logFile = path.join(this.#options.logsDir, `${record.id}.log`);
    const watched = launchWorkerProcess({
      command: process.execPath,
      args,
      logFile,
      env: {
        ...workerEnvironment(this.#options.env ?? process.env),
        RBEE_WORKER_SECRET: this.#secretOf(record),
        ...this.#shardKeys(record),
        // One worker, one device: a GPU worker sees its card only, a CPU worker none (a CUDA build of an
        // engine would otherwise take memory on every card it can see, unaccounted).
        ...(cuda !== null ? {CUDA_VISIBLE_DEVICES: cuda[1]} : spec.device === 'cpu' ? {CUDA_VISIBLE_DEVICES: ''} : {}),
      },
    });
    record.pid = watched.pid > 0 ? watched.pid : null;
    record.launchedAt = new Date();
    record.lastHeartbeatAt = null;
    this.#persist(record);
    this.#options.log(`${record.id} launched: pid ${record.pid}, ${model.name} on ${spec.device}, port ${record.port}, log ${logFile}`);
    const end = await watched.ended;
    await this.#onProcessEnd(record, end, logFile);
  }

  /** The worker's heartbeat secret; a re-adopted worker that never proved its own gets a fresh one for its new process. */
  #secretOf(record: WorkerRecord): string {
    if (record.secret === null) {
      renewSecret(record, randomSecret());
    }
    return record.secret!;
  }

  /** A coordinator probes its shards' own ports: it gets their keys (never their secrets), by environment. */
  #shardKeys(record: WorkerRecord): Record<string, string> {
    const membership = record.group?.membership;
    if (membership?.role !== 'coordinator' || membership.shards.length === 0) {
      return {};
    }
    const keys: Record<string, string> = {};
    for (const shard of membership.shards) {
      const member = this.workers.get(shard.worker_id);
      if (member !== undefined) {
        this.#secretOf(member);
        keys[shard.worker_id] = workerKey(member)!;
      }
    }
    return {[shardKeysVariable]: JSON.stringify(keys)};
  }

  async #onProcessEnd(record: WorkerRecord, end: ProcessEnd, logFile: string): Promise<void> {
    // The group may still hold grandchildren (an engine subprocess): take them down too.
    if (record.pid !== null) {
      killGroup(record.pid, 'SIGKILL');
    }
    const how = end.error !== undefined
      ? `could not start: ${end.error}`
      : end.signal !== null ? `killed by ${end.signal}` : end.code === null ? 'exited' : `exited with code ${end.code}`;
    const ending = this.#endings.get(record.id);
    if (ending !== undefined) {
      this.#end(record, ending.kind, `${ending.reason} (${how})`);
      return;
    }
    const lastError = record.lastHeartbeat?.error;
    const clean = end.code === 0 && end.signal === null && end.error === undefined;
    this.#end(record, clean ? 'clean-exit' : 'failure', `${how}${lastError === undefined ? '' : `: ${lastError}`} (log: ${logFile})`);
  }

  /** The current process is over: stop here for good, or come back after the policy's backoff. */
  #end(record: WorkerRecord, kind: EndKind, reason: string): void {
    this.#endings.delete(record.id);
    this.#pendingCommands.delete(record.id);
    record.pid = null;
    record.inFlight = 0;
    record.draining = false;
    record.reservedBytes = 0;
    if (kind === 'failure') {
      record.lastFailure = reason;
    }
    const decision = decideRestart({
      policy: record.spec.restart,
      end: kind,
      recentRestarts: record.restartTimes,
      now: Date.now(),
      limits: this.#options.restartLimits ?? defaultRestartLimits,
    });
    if (!decision.restart) {
      const final = kind === 'failure' ? 'failed' : 'stopped';
      this.#setState(record, final, kind === 'failure' && record.restarts > 0 ? `${reason}; ${decision.why}` : reason);
      this.#options.log(`${record.id} ${final}: ${record.reason}`);
      return;
    }
    this.#setState(record, 'starting', `restarting in ${decision.delayMs} ms after: ${reason}`);
    this.#options.log(`${record.id} ${record.reason}`);
    const timer = setTimeout(() => {
      this.#restartTimers.delete(record.id);
      if (record.state !== 'starting') {
        return;
      }
      record.restarts++;
      record.restartTimes.push(Date.now());
      this.#options.onEvent?.({type: 'restart', record});
      void freePort().then(port => {
        record.port = port;
        record.lastProgressAt = new Date();
        this.#run(record, null);
      });
    }, decision.delayMs);
    this.#restartTimers.set(record.id, timer);
  }

  #setState(record: WorkerRecord, state: WorkerRecord['state'], reason?: string): void {
    const changed = record.state !== state || (reason !== undefined && record.reason !== reason);
    record.state = state;
    if (reason !== undefined) {
      record.reason = reason;
    }
    if (changed) {
      this.#persist(record);
      this.#options.onEvent?.({type: 'state', record});
      this.#groups.onMemberChange(record);
    }
  }

  /** A new worker: recorded, persisted, announced (it is started separately). */
  #add(record: WorkerRecord): void {
    this.workers.set(record.id, record);
    this.#persist(record);
    this.#options.onEvent?.({type: 'spawned', record});
  }

  #persist(record: WorkerRecord): void {
    this.#options.store.save(toStoredWorker(record));
  }

  #watch(): void {
    const now = Date.now();
    for (const record of this.workers.values()) {
      if (!isAlive(record.state) || record.state === 'stopping' || this.#endings.has(record.id) || this.#restartTimers.has(record.id)) {
        continue;
      }
      const problem = judgeHealth(record, now, this.#options);
      if (problem !== null) {
        this.fail(record, problem);
      }
    }
  }
}
