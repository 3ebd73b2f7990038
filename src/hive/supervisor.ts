/**
 * Starts, watches, restarts and stops worker processes.
 *
 * States: starting -> ready <-> busy -> stopping -> stopped | failed, with the reason kept. The
 * hive learns of a death from the process exit at once, of a hang from missed heartbeats, and of a
 * stuck load from a load that stops making progress. What ends a worker decides, with its
 * restart policy, whether it comes back. The records live in the worker table (its transitions
 * are the only writes); restarts go through the one restart scheduler, a lone worker being a unit
 * of one; processes and ports come in as `processes` and `ports`, so all of it runs without any.
 */
import {randomUUID} from 'node:crypto';
import fs from 'node:fs';
import {RbeeError} from '../errors.js';
import {freePort} from '../http/free-port.js';
import {randomSecret} from '../http/secrets.js';
import {parseModelRef} from '../models/model-ref.js';
import type {ResolvedModel} from '../models/resolve-model.js';
import type {Heartbeat, HiveCommand, SpawnGroupRequest, SpawnPlan, SpawnWorkerRequest, SpawnWorkerRequestBody} from '../protocol/wire.js';
import type {GroupRecord} from './group-record.js';
import {judgeHealth} from './health-judge.js';
import {RestartScheduler} from './restart-scheduler.js';
import {defaultRestartLimits, type EndKind, type RestartLimits} from './restart-policy.js';
import {
  admitOrThrow,
  applyEngine,
  engineModel,
  checkAdapterOptions,
  checkTypeAndDevice,
  chooseWorkerType,
  planSpawn,
  resolveAllowedModel,
  type SpawnCheckOptions,
} from './spawn-checks.js';
import type {StateStore} from './state-store.js';
import {activityOf, SpareRefill} from './spare-refill.js';
import type {Spare, SpareWorkers} from './spare-workers.js';
import {WorkerGroups} from './worker-groups.js';
import {workerLaunchOptions, workerLogFile} from './worker-launch.js';
import {osWorkerProcesses, type ProcessEnd, type WorkerProcesses} from './worker-process.js';
import {createWorkerRecord, hasSecret, isAlive, type WorkerRecord, type WorkerView} from './worker-record.js';
import {WorkerTable, type WorkerReader} from './worker-table.js';
import {traceStartup} from '../startup-trace.js';

export {workerEnvironment} from './worker-launch.js';

export type SupervisorOptions = SpawnCheckOptions & {
  /** Worker types whose adapter can run in a group (as coordinator or shard). */
  groupTypes: string[];
  /** The types whose adapter checks its groups, and the check (throws when the model does not split over the devices). */
  checkGroup?: {types: string[]; check: (type: string, modelPath: string, devices: string[]) => Promise<void>} | undefined;
  hiveUrl: () => string;
  /** The hive's config file, passed to workers for their adapter plugins. */
  configPath: string | null;
  logsDir: string;
  /** Where workers serve the hive's links; null: HTTP only. */
  linksDir: string | null;
  heartbeatIntervalMs: number;
  /** A worker exits when its hive has not answered for this long (default: `missedHeartbeats` intervals). */
  orphanTimeoutMs: number;
  /** Heartbeat intervals a worker may miss before it is failed; a worker waits as many for its hive. */
  missedHeartbeats: number;
  /** A starting worker whose download or load shows no progress for this long has stalled. */
  loadStallTimeoutMs: number;
  /** SIGTERM, then this long to finish in-flight work, then SIGKILL of the whole group. */
  stopGraceMs: number;
  restartLimits?: RestartLimits;
  defaults: {contextSize?: number | undefined; threads?: number | undefined; parallel?: number | undefined; readyTimeoutMs?: number | undefined};
  store: StateStore;
  log: (message: string) => void;
  onEvent?: (event: SupervisorEvent) => void;
  /** Starting, watching and signalling processes (default: this machine's). */
  processes?: WorkerProcesses;
  /** A free loopback port for a worker (default: one the OS hands out). */
  ports?: () => Promise<number>;
  /** Worker processes booted ahead of their spawn (none: every worker process starts at its spawn). */
  spares?: SpareWorkers | undefined;
  /** Whether requests are held waiting for a worker to start (models on demand): the hive is not quiet then. */
  requestsHeld?: () => boolean;
};

export type SupervisorEvent = {type: 'spawned' | 'state' | 'restart'; record: WorkerView} | {type: 'group'; change: 'spawned' | 'health'; group: GroupRecord};

/** Why a worker's current process is ending, set by whoever ends it, read when it exits. */
type Ending = {kind: 'requested' | 'failure'; reason: string};

export class Supervisor {
  readonly #table: WorkerTable;
  readonly #groups: WorkerGroups;
  readonly #restarts: RestartScheduler;
  readonly #options: SupervisorOptions;
  readonly #processes: WorkerProcesses;
  readonly #ports: () => Promise<number>;
  readonly #endings = new Map<string, Ending>();
  readonly #runs = new Map<string, Promise<void>>();
  readonly #pendingCommands = new Map<string, HiveCommand[]>();
  /** Who follows the workers' changes in this process (the requests waiting for a model to start). */
  readonly #changeListeners = new Set<() => void>();
  /** Spares taken for workers not launched yet. */
  readonly #sparesTaken = new Map<string, Spare>();
  readonly #spareRefill: SpareRefill;
  readonly #watchdog: NodeJS.Timeout;
  readonly #watchPeriodMs: number;
  #lastWatchAt: number;

  constructor(options: SupervisorOptions) {
    this.#options = options;
    this.#processes = options.processes ?? osWorkerProcesses;
    this.#ports = options.ports ?? freePort;
    this.#restarts = new RestartScheduler(options.restartLimits ?? defaultRestartLimits);
    this.#spareRefill = new SpareRefill(options.spares, () => activityOf(this.#table.values(), options.requestsHeld?.() ?? false));
    this.#table = new WorkerTable({
      store: options.store,
      onChange: change => {
        this.#options.onEvent?.({type: change.type, record: change.worker});
        if (change.type === 'state') {
          this.#groups.onMemberChange(change.worker);
          this.#spareRefill.poke();
        }
        // After the group's health follows its member: whether a group's coordinator serves depends on it.
        this.#changed();
      },
    });
    this.#groups = new WorkerGroups({
      workers: this.#table,
      restarts: this.#restarts,
      planOptions: () => ({...this.#options, reservedOn: device => this.#table.reservedOn(device, null)}),
      run: (id, local) => this.#run(id, local),
      stop: (id, reason) => this.#stopOne(id, reason),
      ended: id => this.#runs.get(id),
      emit: group => {
        this.#options.onEvent?.({type: 'group', change: 'health', group});
        this.#changed();
      },
      spawned: group => this.#options.onEvent?.({type: 'group', change: 'spawned', group}),
      log: message => this.#options.log(message),
    });
    fs.mkdirSync(options.logsDir, {recursive: true, mode: 0o700});
    // A fixed fine tick, not the hive's interval: a worker may heartbeat faster than the hive's default.
    this.#watchPeriodMs = Math.max(25, Math.min(250, Math.floor(options.heartbeatIntervalMs / 2)));
    this.#lastWatchAt = Date.now();
    this.#watchdog = setInterval(() => {
      this.#watch();
      this.#spareRefill.poke();
    }, this.#watchPeriodMs);
    this.#watchdog.unref();
  }

  /**
   * Calls `listener` after each change of a worker's record (spawned, state, restart) or of a
   * group's health, until the returned call: what serves may have changed, so look again.
   */
  onWorkerChange(listener: () => void): () => void {
    this.#changeListeners.add(listener);
    return () => this.#changeListeners.delete(listener);
  }

  #changed(): void {
    for (const listener of this.#changeListeners) {
      listener();
    }
  }

  /**
   * Whether the worker is over for good: stopped or failed with no restart to come. A worker is
   * marked failed the moment it fails, before its process is gone and its policy has decided.
   */
  isOver(id: string): boolean {
    const worker = this.#table.get(id);
    return worker === undefined || ((worker.state === 'failed' || worker.state === 'stopped') && !this.#endings.has(id) && !this.#restarts.pending(id));
  }

  /** Every worker, to read; only the supervisor and its groups change them, through the table's transitions. */
  get workers(): WorkerReader {
    return this.#table;
  }

  /** A request routed to the worker; returns the one call that counts it out again. */
  requestStarted(id: string): () => void {
    const done = this.#table.requestStarted(id);
    return () => {
      done();
      this.#spareRefill.poke();
    };
  }

  /** Spare worker processes: kept for `type` from now on (started when the hive is quiet). */
  wantSpare(type: string): void {
    this.#spareRefill.want(type);
  }

  /**
   * A worker whose process this hive does not run (simulated load for a benchmark): it is heard
   * and routed to like any other, but never launched, restarted or stopped by signal.
   */
  addExternal(record: WorkerRecord): WorkerView {
    return this.#table.add({...record, pid: null, launchedAt: null}, 'adopted');
  }

  /** Forgets an external worker (nothing is signalled or stored). */
  forgetExternal(id: string): void {
    this.#table.remove(id);
  }

  /** Checks a spawn request; with `dry_run`, answers the plan; otherwise records the worker and starts it. */
  async spawn(body: SpawnWorkerRequestBody): Promise<WorkerView | SpawnPlan> {
    const request = applyEngine(body, this.#options);
    checkTypeAndDevice(request, this.#options);
    const spec: SpawnWorkerRequest = {...request, type: await chooseWorkerType(request, this.#options)};
    await checkAdapterOptions(spec, this.#options);
    const reference = parseModelRef(spec.model);
    // A local file is checked before answering, so a typo is a 4xx and not a failed worker.
    const local = reference.kind === 'path' ? await resolveAllowedModel(spec.model, spec.type, this.#options) : engineModel(spec, this.#options);
    if (spec.dry_run) {
      return planSpawn(spec, local, this.#table.reservedOn(spec.device, null), this.#options);
    }
    if (local !== null && local.kind !== 'engine') {
      await admitOrThrow(spec, local.path, this.#table.reservedOn(spec.device, null), this.#options);
    }
    traceStartup('hive', 'spawn checked');
    const port = await this.#ports();
    // A spare of its type becomes this worker: the id is the one in the spare's command line.
    const spare = this.#options.spares?.take(spec.type) ?? null;
    const worker = this.#table.add(
      createWorkerRecord({
        id: spare?.workerId ?? `worker-${randomUUID().slice(0, 8)}`,
        spec,
        modelName: local?.name ?? spec.model,
        modelPath: local === null || local.kind === 'engine' ? null : local.path,
        port,
        secret: randomSecret(),
      }),
      'spawned',
    );
    if (spare !== null) {
      this.#sparesTaken.set(worker.id, spare);
    }
    this.#options.spares?.want(spec.type);
    this.#run(worker.id, local);
    return worker;
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

  get(id: string): WorkerView {
    return this.#table.require(id);
  }

  /** Queues a command for the worker's next heartbeat answer. Shutdown and unload count as requested ends. */
  command(id: string, command: HiveCommand): WorkerView {
    const worker = this.get(id);
    if (!isAlive(worker.state)) {
      throw new RbeeError('worker_not_ready', `worker ${id} is ${worker.state}`);
    }
    if (command.type === 'drain') {
      this.#table.drain(id);
    }
    // A multi-model worker (it lists `available_models`) unloads in place and goes on running: no ending.
    const unloadsInPlace = command.type === 'unload_model' && worker.lastHeartbeat?.available_models !== undefined;
    if (command.type === 'shutdown' || (command.type === 'unload_model' && !unloadsInPlace)) {
      this.#endings.set(id, {kind: 'requested', reason: command.type === 'shutdown' ? `shutdown: ${command.reason ?? 'asked'}` : `unloaded ${command.model}`});
    }
    this.#pendingCommands.set(id, [...(this.#pendingCommands.get(id) ?? []), command]);
    return worker;
  }

  /**
   * A heartbeat, checked against the worker's secret: the hive's view of its state follows the
   * worker's own; the answer carries the commands queued for it (a worker the hive gave up on is
   * told to shut down).
   */
  heartbeat(heartbeat: Heartbeat, secret: string | undefined): {worker: WorkerView; commands: HiveCommand[]} {
    const known = this.#table.get(heartbeat.worker_id);
    if (known === undefined) {
      throw new RbeeError('worker_not_found', `heartbeat from unknown worker "${heartbeat.worker_id}"`);
    }
    if (!hasSecret(known, secret)) {
      throw new RbeeError('unauthorized', `heartbeat for "${heartbeat.worker_id}" does not carry that worker's secret`);
    }
    const worker = this.#table.heartbeat(known.id, heartbeat, secret!);
    this.#follow(worker, heartbeat);
    return {worker, commands: this.#takeCommands(worker)};
  }

  #follow(worker: WorkerView, heartbeat: Heartbeat): void {
    if (!isAlive(worker.state) || worker.state === 'stopping') {
      return;
    }
    if (heartbeat.status === 'error') {
      this.fail(worker.id, heartbeat.error ?? 'worker reported an error');
    } else if (heartbeat.status === 'ready' || heartbeat.status === 'busy') {
      if (worker.state === 'starting') {
        traceStartup(worker.id, 'ready heartbeat received by the hive');
        this.#table.serving(worker.id);
      }
      this.#table.setState(worker.id, heartbeat.status);
    } else if (heartbeat.status === 'starting' && heartbeat.load_progress !== undefined) {
      const done = Math.round(heartbeat.load_progress * 1000);
      if (worker.progress?.phase !== 'loading' || worker.progress.done !== done) {
        this.#table.progressed(worker.id, {phase: 'loading', done, total: 1000});
      }
    }
    // The coordinator's heartbeat says whether it still reaches every shard.
    this.#groups.onMemberChange(worker);
  }

  #takeCommands(worker: WorkerView): HiveCommand[] {
    if (worker.state === 'failed' || worker.state === 'stopped') {
      return [{type: 'shutdown', reason: worker.reason ?? worker.state}];
    }
    const commands = this.#pendingCommands.get(worker.id) ?? [];
    this.#pendingCommands.delete(worker.id);
    return commands;
  }

  /** Ends the worker's process as a failure; the restart policy decides what follows. */
  fail(id: string, reason: string): void {
    const worker = this.get(id);
    if (!isAlive(worker.state) || this.#endings.has(id)) {
      return;
    }
    this.#options.log(`${id} failing: ${reason}`);
    this.#endings.set(id, {kind: 'failure', reason});
    if (worker.pid === null) {
      this.#end(id, 'failure', reason);
    } else {
      // Failed at once, not when the kernel has torn the process down: nothing is routed to it meanwhile.
      this.#table.setState(id, 'failed', reason);
      this.#processes.signal(worker.pid, 'SIGKILL');
    }
  }

  /** Stops a worker; a member of a group stops its whole group, which cannot serve without it. */
  async stop(id: string, reason = 'stopped by request'): Promise<WorkerView> {
    const worker = this.get(id);
    if (worker.group !== null) {
      await this.stopGroup(worker.group.group.id, `${reason} (member ${id})`);
      return worker;
    }
    return this.#stopOne(id, reason);
  }

  /** SIGTERM to the worker's process group, SIGKILL after the grace period; resolves once the process is gone. */
  async #stopOne(id: string, reason: string): Promise<WorkerView> {
    const worker = this.get(id);
    if (this.#restarts.cancel(id)) {
      this.#end(id, 'requested', reason);
      return worker;
    }
    if (isAlive(worker.state)) {
      this.#endings.set(id, {kind: 'requested', reason});
      this.#table.setState(id, 'stopping', reason);
      if (worker.pid === null) {
        // Still downloading: nothing to signal, the run sees the ending when the download returns.
        this.#end(id, 'requested', reason);
        return worker;
      }
      traceStartup(id, 'SIGTERM sent by the hive');
      this.#processes.signal(worker.pid, 'SIGTERM');
      const escalation = setTimeout(() => worker.pid !== null && this.#processes.signal(worker.pid, 'SIGKILL'), this.#options.stopGraceMs);
      await this.#runs.get(id);
      clearTimeout(escalation);
    }
    return worker;
  }

  async stopAll(reason: string): Promise<void> {
    clearInterval(this.#watchdog);
    this.#groups.markAllStopped(reason);
    await Promise.all([
      ...[...this.#table.values()].filter(worker => isAlive(worker.state)).map(worker => this.#stopOne(worker.id, reason)),
      this.#options.spares?.close(),
    ]);
    this.#restarts.cancelAll();
  }

  /** After a hive restart: take back the workers a previous hive left running, restart none. */
  adoptFromStore(): {adopted: string[]; failed: string[]} {
    const adopted: string[] = [];
    const failed: string[] = [];
    // Every record first, then the liveness checks (groups are judged after them, see WorkerGroups.adoptAll).
    const workers = this.#options.store.loadLive().map(stored => {
      const group = stored.group === null ? null : {group: this.#groups.adopt(stored.group), membership: stored.group.membership};
      return this.#table.add(
        createWorkerRecord({
          id: stored.id,
          spec: stored.spec,
          modelName: stored.modelName,
          modelPath: stored.modelPath,
          port: stored.port,
          secret: null,
          secretHash: stored.secretHash,
          pid: stored.pid,
          startedAt: new Date(stored.startedAt),
          launchedAt: new Date(),
          restarts: stored.restarts,
          adopted: true,
          group,
          ...(group?.membership.role === 'shard' ? {aliases: new Set<string>()} : {}),
        }),
        'adopted',
      );
    });
    this.#groups.adoptAll(() => {
      for (const worker of workers) {
        const alive = worker.pid !== null && this.#processes.isWorker(worker.pid, worker.id);
        this.#table.adopted(worker.id, alive);
        if (alive) {
          const watched = this.#processes.watch(worker.pid!);
          this.#runs.set(
            worker.id,
            watched.ended.then(end => this.#onProcessEnd(worker.id, end)),
          );
          adopted.push(worker.id);
        } else {
          failed.push(worker.id);
        }
      }
    });
    return {adopted, failed};
  }

  #run(id: string, local: ResolvedModel | null): void {
    const run = this.#prepareAndLaunch(id, local)
      .catch(error => {
        this.#end(id, 'failure', `could not start: ${(error as Error).message}`);
      })
      .finally(() => {
        // Stopped or failed before its launch: the spare it took goes.
        const spare = this.#sparesTaken.get(id);
        if (spare !== undefined) {
          this.#sparesTaken.delete(id);
          this.#options.spares?.discard(spare);
        }
      });
    this.#runs.set(id, run);
  }

  async #prepareAndLaunch(id: string, local: ResolvedModel | null): Promise<void> {
    const worker = this.get(id);
    if (worker.group?.membership.role === 'shard') {
      // A llama.cpp shard holds the layers its coordinator sends it; a candle rank reads its own slice
      // of the file, so a shard gets the model's path when the group's model is a file.
      this.#table.progressed(id, {phase: 'loading', done: 0, total: 1000});
      await this.#launch(id, {path: worker.modelPath ?? worker.spec.model, name: worker.modelName});
      return;
    }
    // An engine's own model (`engine:<name>`) again after a restart: nothing to resolve or size.
    let model = local ?? engineModel(worker.spec, this.#options);
    if (model === null) {
      try {
        model = await resolveAllowedModel(worker.spec.model, worker.spec.type, this.#options, progress => {
          this.#table.progressed(id, {phase: progress.phase, done: progress.done, total: progress.total});
        });
      } catch (error) {
        this.#end(id, 'failure', `model ${worker.spec.model}: ${(error as Error).message}`);
        return;
      }
      if (this.#endings.has(id) || !isAlive(worker.state)) {
        return; // stopped or failed while the model downloaded
      }
      try {
        const verdict = await admitOrThrow(worker.spec, model.path, this.#table.reservedOn(worker.spec.device, id), this.#options);
        this.#table.reserved(id, verdict.estimate.total);
      } catch (error) {
        this.#end(id, 'failure', (error as Error).message);
        return;
      }
    }
    this.#table.resolved(id, model);
    this.#table.progressed(id, {phase: 'loading', done: 0, total: 1000});
    await this.#launch(id, model);
  }

  async #launch(id: string, model: Pick<ResolvedModel, 'path' | 'name'>): Promise<void> {
    const worker = this.get(id);
    const shards = worker.group?.membership.role === 'coordinator' ? worker.group.membership.shards : [];
    const shardKeys = Object.fromEntries(
      shards.filter(shard => this.#table.has(shard.worker_id)).map(shard => [shard.worker_id, this.#table.keyForLaunch(shard.worker_id)]),
    );
    const groupSecret = worker.group?.group.launchSecret;
    const launch = workerLaunchOptions(
      worker,
      model,
      {secret: this.#table.secretForLaunch(id), shardKeys, ...(groupSecret === undefined ? {} : {groupSecret})},
      this.#options,
    );
    const spare = this.#sparesTaken.get(id);
    this.#sparesTaken.delete(id);
    const assigned = spare === undefined ? null : (this.#options.spares?.assign(spare, launch) ?? null);
    const watched = assigned ?? this.#processes.launch(launch);
    traceStartup(id, assigned === null ? 'worker process spawned by the hive' : 'spare worker process assigned by the hive');
    this.#table.launched(id, watched.pid > 0 ? watched.pid : null);
    this.#options.log(`${id} launched: pid ${worker.pid}, ${model.name} on ${worker.spec.device}, port ${worker.port}, log ${launch.logFile}`);
    await this.#onProcessEnd(id, await watched.ended);
  }

  async #onProcessEnd(id: string, end: ProcessEnd): Promise<void> {
    traceStartup(id, 'process end seen by the hive');
    const worker = this.get(id);
    // The group may still hold grandchildren (an engine subprocess): take them down too.
    if (worker.pid !== null) {
      this.#processes.signal(worker.pid, 'SIGKILL');
    }
    const how =
      end.error !== undefined
        ? `could not start: ${end.error}`
        : end.signal !== null
          ? `killed by ${end.signal}`
          : end.code === null
            ? 'exited'
            : `exited with code ${end.code}`;
    const ending = this.#endings.get(id);
    if (ending !== undefined) {
      this.#end(id, ending.kind, `${ending.reason} (${how})`);
      return;
    }
    const lastError = worker.lastHeartbeat?.error;
    const clean = end.code === 0 && end.signal === null && end.error === undefined;
    this.#end(
      id,
      clean ? 'clean-exit' : 'failure',
      `${how}${lastError === undefined ? '' : `: ${lastError}`} (log: ${workerLogFile(this.#options.logsDir, id)})`,
    );
  }

  /** The current process is over: stop here for good, or come back after the policy's backoff. */
  #end(id: string, kind: EndKind, reason: string): void {
    this.#endings.delete(id);
    this.#pendingCommands.delete(id);
    this.#table.ended(id, kind === 'failure' ? reason : null);
    const worker = this.get(id);
    const decision = this.#restarts.schedule(id, worker.spec.restart, kind, () => void this.#relaunch(id));
    if (!decision.restart) {
      const final = kind === 'failure' ? 'failed' : 'stopped';
      this.#table.setState(id, final, kind === 'failure' && worker.restarts > 0 ? `${reason}; ${decision.why}` : reason);
      this.#options.log(`${id} ${final}: ${worker.reason}`);
      return;
    }
    this.#table.setState(id, 'starting', `restarting in ${decision.delayMs} ms after: ${reason}`);
    this.#options.log(`${id} ${worker.reason}`);
  }

  /** The backoff is over: the same worker again, on a fresh port, unless it was stopped meanwhile. */
  async #relaunch(id: string): Promise<void> {
    const port = await this.#ports();
    const worker = this.get(id);
    if (worker.state !== 'starting' || this.#restarts.pending(id)) {
      return;
    }
    this.#table.relaunching(id, {port, reason: worker.reason ?? 'restarting'});
    this.#run(id, null);
  }

  #watch(): void {
    const now = Date.now();
    const since = now - this.#lastWatchAt;
    this.#lastWatchAt = now;
    // When the hive's own loop stalled (a loaded machine), heartbeats may be waiting unread in
    // its sockets: judge nobody until they have been read, or the hive fails healthy workers.
    if (since > this.#watchPeriodMs + this.#options.heartbeatIntervalMs) {
      return;
    }
    for (const worker of this.#table.values()) {
      if (!isAlive(worker.state) || worker.state === 'stopping' || this.#endings.has(worker.id) || this.#restarts.pending(worker.id)) {
        continue;
      }
      const problem = judgeHealth(worker, now, this.#options);
      if (problem !== null) {
        this.fail(worker.id, problem);
      }
    }
  }
}
