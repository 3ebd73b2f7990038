/**
 * Models on demand: a request naming a catalogue model with no worker serving it starts one and
 * waits for it (many requests, one start); a worker idle past its timeout is stopped; a start that
 * does not fit stops least-recently-used idle models first (room-planner.ts). The supervisor stays
 * the one owner of workers: this module only asks it to spawn and stop, and every decision it takes
 * is announced as an `autoscale` event and counted in /metrics.
 */
import {RbeeError} from '../errors.js';
import type {CatalogueEntry} from '../config/schema.js';
import type {AutoscaleAction, AutoscaleEvent, CatalogueList, DeviceInfo, SpawnGroupRequest, SpawnPlan, SpawnWorkerRequestBody} from '../protocol/wire.js';
import {planRoom, type LoadedModel} from './room-planner.js';
import type {Supervisor} from './supervisor.js';
import {isAlive, isServing, type WorkerView} from './worker-record.js';
import {traceStartup} from '../startup-trace.js';

export type OnDemandSettings = {
  maxLoadedModels: number | null;
  /** Share of a device's memory a start leaves free. */
  vramHeadroom: number;
  idleTimeoutMs: number;
  startTimeoutMs: number;
};

export type OnDemandMetrics = {
  started(reason: 'request'): void;
  evicted(): void;
  waited(seconds: number): void;
};

export type OnDemandOptions = {
  supervisor: Supervisor;
  catalogue: Readonly<Record<string, CatalogueEntry>>;
  settings: OnDemandSettings;
  devices: readonly DeviceInfo[];
  publish: (event: AutoscaleEvent) => void;
  metrics: OnDemandMetrics;
  log: (message: string) => void;
  /** How often idleness is checked (tests shorten it). */
  idleCheckMs?: number;
};

const decisionsKept = 20;
/** How long a model started for a request is kept for it (from when it serves) against idle stops and eviction. */
const awaitFirstRequestMs = 60_000;
/** How long a start waits for busy models to go idle before it gives up on making room. */
const busyWaitMs = 60_000;

function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise(resolve => {
    const timer = setTimeout(resolve, ms);
    signal?.addEventListener('abort', () => {
      clearTimeout(timer);
      resolve();
    });
  });
}

export class ModelsOnDemand {
  readonly #options: OnDemandOptions;
  /** One start per catalogue name at a time: the requests that arrive meanwhile wait on it. */
  readonly #starting = new Map<string, Promise<WorkerView>>();
  /** Workers started for a request that none has reached yet: never stopped to make room. */
  readonly #awaitingFirst = new Set<string>();
  /** Workers being stopped for idleness or room, so a tick does not stop them twice. */
  readonly #stopping = new Set<string>();
  readonly #idleTimer: NodeJS.Timeout;
  /** Requests waiting in `ensure` for their model to start. */
  #held = 0;
  /** The latest decisions, for `rbee status` and `rbee models`: the event stream has only what happens while one follows it. */
  readonly #decisions: AutoscaleEvent[] = [];

  constructor(options: OnDemandOptions) {
    this.#options = options;
    this.#idleTimer = setInterval(() => this.#stopIdle(), options.idleCheckMs ?? 1_000);
    this.#idleTimer.unref();
  }

  close(): void {
    clearInterval(this.#idleTimer);
  }

  /** The catalogue entry a request's `model` names, if any (names match exactly, as on the wire). */
  has(name: string | undefined): name is string {
    return name !== undefined && Object.hasOwn(this.#options.catalogue, name);
  }

  /** Catalogue names, for /v1/models: they can be asked for though nothing serves them yet. */
  names(): string[] {
    return Object.keys(this.#options.catalogue).sort();
  }

  /**
   * Returns once a worker serves catalogue model `name`, starting one when none does. `signal` is
   * the client's: a client that goes stops waiting, but the start goes on for the next one.
   */
  async ensure(name: string, signal: AbortSignal): Promise<void> {
    if (this.#serving(name) !== undefined) {
      return;
    }
    traceStartup('hive', `request for cold model ${name} held`);
    const began = Date.now();
    let start = this.#starting.get(name);
    if (start === undefined) {
      start = this.#start(name).finally(() => this.#starting.delete(name));
      this.#starting.set(name, start);
    }
    const aborted = new Promise<never>((_, reject) => {
      const gone = () => reject(new RbeeError('invalid_request', 'the client went away while its model started'));
      if (signal.aborted) {
        gone();
      }
      signal.addEventListener('abort', gone, {once: true});
    });
    aborted.catch(() => undefined);
    this.#held++;
    try {
      await Promise.race([start, aborted]);
    } finally {
      this.#held--;
      this.#options.metrics.waited((Date.now() - began) / 1000);
    }
  }

  /** Whether requests are waiting for a model to start (they go in flight the moment it serves). */
  holding(): boolean {
    return this.#held > 0;
  }

  /** A request reached `workerId`: a worker started for one may now make room like any other. */
  routed(workerId: string): void {
    this.#awaitingFirst.delete(workerId);
  }

  list(): CatalogueList {
    return {models: this.#models(), decisions: [...this.#decisions]};
  }

  #models(): CatalogueList['models'] {
    return this.names().map(name => {
      const entry = this.#options.catalogue[name]!;
      const worker = this.#serving(name) ?? this.#alive(name);
      const idleTimeout = entry.pin ? null : (entry.idleTimeout ?? this.#options.settings.idleTimeoutMs);
      const serving = worker !== undefined && isServing(worker);
      const idle = serving && worker.inFlight === 0 && Date.now() - worker.lastActiveAt.getTime() >= Math.min(60_000, idleTimeout ?? 60_000);
      return {
        name,
        model: entry.model,
        type: entry.type ?? null,
        device: entry.group?.devices.join(',') ?? entry.device,
        pinned: entry.pin,
        idle_timeout_ms: idleTimeout,
        state: worker === undefined ? 'cold' : !serving ? 'starting' : idle ? 'idle' : 'ready',
        worker_id: worker?.id ?? null,
        idle_since: serving && worker.inFlight === 0 ? worker.lastActiveAt.toISOString() : null,
      };
    });
  }

  #serving(name: string): WorkerView | undefined {
    return [...this.#options.supervisor.workers.values()].find(worker => worker.aliases.has(name) && isServing(worker));
  }

  #alive(name: string): WorkerView | undefined {
    return [...this.#options.supervisor.workers.values()].find(worker => worker.spec.name === name && isAlive(worker.state) && worker.state !== 'stopping');
  }

  async #start(name: string): Promise<WorkerView> {
    const entry = this.#options.catalogue[name]!;
    let worker = this.#alive(name);
    if (worker === undefined) {
      worker = entry.group === undefined ? await this.#startWorker(name, entry) : await this.#startGroup(name, entry, entry.group.devices);
      this.#awaitingFirst.add(worker.id);
      this.#options.metrics.started('request');
    }
    return this.#waitServing(name, worker.id);
  }

  async #startWorker(name: string, entry: CatalogueEntry): Promise<WorkerView> {
    const {device, plan} = await this.#place(name, entry);
    await this.#makeRoom(name, device, plan);
    const worker = (await this.#options.supervisor.spawn(this.#spawnRequest(name, entry, device, false))) as WorkerView;
    this.#announce('started-for-request', name, {
      workerId: worker.id,
      device,
      reason: `a request asked for "${name}" and no worker served it`,
      figures: this.#figures(device, plan),
    });
    return worker;
  }

  /**
   * A group entry's devices are fixed, and the group's own admission (the model against its
   * devices' free memory together) says whether it fits. When it does not, or maxLoadedModels is
   * reached, least-recently-used idle models on those devices (any device for the count) are
   * stopped one at a time until it starts; busy ones are waited for, bounded; else it is refused.
   */
  async #startGroup(name: string, entry: CatalogueEntry, devices: readonly string[]): Promise<WorkerView> {
    const deadline = Date.now() + busyWaitMs;
    const where = devices.join(',');
    for (;;) {
      const loaded = this.#loaded();
      const max = this.#options.settings.maxLoadedModels;
      const atMax = max !== null && loaded.length >= max;
      let shortOfMemory: RbeeError | null = null;
      if (!atMax) {
        try {
          const group = await this.#options.supervisor.spawnGroup(this.#groupRequest(name, entry, devices));
          this.#announce('started-for-request', name, {
            workerId: group.coordinatorId,
            device: where,
            reason: `a request asked for "${name}" and no worker group served it (group ${group.id})`,
          });
          return this.#options.supervisor.get(group.coordinatorId);
        } catch (error) {
          if (!(error instanceof RbeeError) || error.code !== 'insufficient_memory') {
            throw error;
          }
          shortOfMemory = error;
        }
      }
      const movable = loaded.filter(model => !model.pinned && !model.awaitingFirstRequest && (atMax || devices.includes(model.device)));
      const idle = movable.filter(model => model.inFlight === 0).sort((a, b) => a.lastActiveAt - b.lastActiveAt)[0];
      if (idle !== undefined) {
        await this.#evict(idle, name);
        continue;
      }
      if (movable.length > 0 && Date.now() <= deadline) {
        await sleep(200);
        continue;
      }
      const reason =
        movable.length > 0
          ? `the models that would make room stayed busy for ${busyWaitMs / 1000} s: ${movable.map(model => model.name).join(', ')}`
          : atMax
            ? `${loaded.length} models are loaded (maxLoadedModels ${max}) and none of them may be stopped`
            : `${shortOfMemory?.message ?? 'it does not fit'}, and no idle model on ${where} may be stopped`;
      this.#announce('refused-for', name, {device: where, reason});
      throw new RbeeError('model_unavailable', `cannot start model "${name}" on ${where}: ${reason}`, shortOfMemory === null ? {} : {cause: shortOfMemory});
    }
  }

  #groupRequest(name: string, entry: CatalogueEntry, devices: readonly string[]): SpawnGroupRequest {
    return {
      model: entry.model,
      devices: [...devices],
      ...(entry.type === undefined ? {} : {type: entry.type}),
      ...(entry.contextSize === undefined ? {} : {context_size: entry.contextSize}),
      ...(entry.parallel === undefined ? {} : {parallel: entry.parallel}),
      ...(entry.threads === undefined ? {} : {threads: entry.threads}),
      name,
      ...(entry.pin ? {} : {idle_timeout_ms: entry.idleTimeout ?? this.#options.settings.idleTimeoutMs}),
      restart: 'on-failure',
      force: false,
    };
  }

  #spawnRequest(name: string, entry: CatalogueEntry, device: string, dryRun: boolean): SpawnWorkerRequestBody {
    return {
      model: entry.model,
      device,
      ...(entry.type === undefined ? {} : {type: entry.type}),
      ...(entry.contextSize === undefined ? {} : {context_size: entry.contextSize}),
      ...(entry.parallel === undefined ? {} : {parallel: entry.parallel}),
      ...(entry.threads === undefined ? {} : {threads: entry.threads}),
      ...(entry.adapterOptions === undefined ? {} : {adapter_options: entry.adapterOptions}),
      name,
      ...(entry.pin ? {} : {idle_timeout_ms: entry.idleTimeout ?? this.#options.settings.idleTimeoutMs}),
      restart: 'on-failure',
      force: false,
      dry_run: dryRun,
    };
  }

  #headroom(device: string): number {
    const total = this.#options.devices.find(info => info.id === device)?.memory_total ?? 0;
    return Math.round(total * this.#options.settings.vramHeadroom);
  }

  #figures(device: string, plan: SpawnPlan): {need: number; free: number; headroom: number} {
    return {need: plan.estimate?.total ?? 0, free: plan.free_memory, headroom: this.#headroom(device)};
  }

  /**
   * The entry's device, or for "auto" the GPU with the most free memory that fits the estimate
   * with its headroom (the CPU last), else the one where stopping idle models makes it fit.
   */
  async #place(name: string, entry: CatalogueEntry): Promise<{device: string; plan: SpawnPlan}> {
    const dryRun = async (device: string) => (await this.#options.supervisor.spawn(this.#spawnRequest(name, entry, device, true))) as SpawnPlan;
    if (entry.device !== 'auto') {
      return {device: entry.device, plan: await dryRun(entry.device)};
    }
    const gpus = this.#options.devices.filter(info => info.id.startsWith('cuda:') || info.id === 'metal').map(info => info.id);
    const plans: {device: string; plan: SpawnPlan}[] = [];
    for (const device of [...gpus, 'cpu']) {
      try {
        plans.push({device, plan: await dryRun(device)});
      } catch (error) {
        // A type that cannot run on this device is no candidate; anything else is the request's answer.
        if (!(error instanceof RbeeError) || error.code !== 'device_unsupported') {
          throw error;
        }
      }
    }
    if (plans.length === 0) {
      throw new RbeeError('device_unsupported', `model "${name}": no device here runs its worker type`);
    }
    const room = (candidate: {device: string; plan: SpawnPlan}) =>
      candidate.plan.free_memory - this.#headroom(candidate.device) - (candidate.plan.estimate?.total ?? 0);
    const byRoom = plans.filter(candidate => candidate.device !== 'cpu').sort((a, b) => room(b) - room(a));
    const cpu = plans.find(candidate => candidate.device === 'cpu');
    const fitting = [...byRoom, ...(cpu === undefined ? [] : [cpu])].find(candidate => room(candidate) >= 0);
    if (fitting !== undefined) {
      return fitting;
    }
    const freeable = [...byRoom, ...(cpu === undefined ? [] : [cpu])].find(
      candidate => planRoom(this.#roomRequest(candidate.device, candidate.plan)).kind !== 'refuse',
    );
    return freeable ?? byRoom[0] ?? cpu!;
  }

  #loaded(): LoadedModel[] {
    const models: LoadedModel[] = [];
    for (const worker of this.#options.supervisor.workers.values()) {
      if (!isAlive(worker.state) || worker.group?.membership.role === 'shard' || this.#stopping.has(worker.id)) {
        continue;
      }
      const heartbeat = worker.lastHeartbeat;
      const onGpu = worker.spec.device !== 'cpu';
      const catalogued = worker.spec.name !== undefined && Object.hasOwn(this.#options.catalogue, worker.spec.name);
      models.push({
        workerId: worker.id,
        name: worker.spec.name ?? worker.modelName,
        device: worker.spec.device,
        bytes: (onGpu ? heartbeat?.vram_used : heartbeat?.ram_used) ?? worker.reservedBytes,
        inFlight: worker.inFlight,
        lastActiveAt: worker.lastActiveAt.getTime(),
        // Workers and groups spawned by hand and pinned entries are never stopped to make room. A
        // catalogue group counts as one model, on its coordinator's device, with its coordinator's memory.
        pinned: !catalogued || this.#options.catalogue[worker.spec.name!]!.pin,
        // A request has a minute after its model serves to reach it; one that never comes does not pin the model.
        awaitingFirstRequest: !isServing(worker) || (this.#awaitingFirst.has(worker.id) && Date.now() - worker.lastActiveAt.getTime() < awaitFirstRequestMs),
      });
    }
    return models;
  }

  #roomRequest(device: string, plan: SpawnPlan) {
    return {
      device,
      need: plan.estimate?.total ?? 0,
      free: plan.free_memory,
      headroom: this.#headroom(device),
      loaded: this.#loaded(),
      maxLoadedModels: this.#options.settings.maxLoadedModels,
    };
  }

  /** Stops what must go for `name` to start on `device`, waiting (bounded) for busy models to finish; throws when nothing can make room. */
  async #makeRoom(name: string, device: string, firstPlan: SpawnPlan): Promise<void> {
    const entry = this.#options.catalogue[name]!;
    const deadline = Date.now() + busyWaitMs;
    let plan = firstPlan;
    for (;;) {
      const decision = planRoom(this.#roomRequest(device, plan));
      if (decision.kind === 'fits') {
        return;
      }
      if (decision.kind === 'refuse' || (decision.kind === 'wait' && Date.now() > deadline)) {
        const reason =
          decision.kind === 'refuse'
            ? decision.reason
            : `the models that would make room stayed busy for ${busyWaitMs / 1000} s: ${decision.busy.map(model => model.name).join(', ')}`;
        this.#announce('refused-for', name, {device, reason, figures: this.#figures(device, plan)});
        throw new RbeeError('model_unavailable', `cannot start model "${name}" on ${device}: ${reason}`);
      }
      if (decision.kind === 'wait') {
        await sleep(200);
      } else {
        await Promise.all(decision.evict.map(model => this.#evict(model, name, this.#figures(device, plan))));
      }
      plan = (await this.#options.supervisor.spawn(this.#spawnRequest(name, entry, device, true))) as SpawnPlan;
    }
  }

  async #evict(model: LoadedModel, forName: string, figures?: {need: number; free: number; headroom: number}): Promise<void> {
    this.#stopping.add(model.workerId);
    this.#options.metrics.evicted();
    this.#announce('evicted-for', model.name, {
      workerId: model.workerId,
      device: model.device,
      for: forName,
      reason: `stopped to make room for "${forName}": idle since ${new Date(model.lastActiveAt).toISOString()}, the least recently used`,
      ...(figures === undefined ? {} : {figures}),
    });
    try {
      await this.#options.supervisor.stop(model.workerId, `stopped to make room for model "${forName}"`);
    } finally {
      this.#stopping.delete(model.workerId);
    }
  }

  /**
   * Resolves once the worker serves, judged again at each change of a worker's record or a group's
   * health (the ready heartbeat's transition among them): the request goes on the moment the hive
   * marks it ready, not at a poll.
   */
  #waitServing(name: string, workerId: string): Promise<WorkerView> {
    const {supervisor, settings} = this.#options;
    return new Promise<WorkerView>((resolve, reject) => {
      let timer: NodeJS.Timeout | undefined;
      let unsubscribe: () => void = () => undefined;
      const settle = (outcome: {worker: WorkerView} | {error: RbeeError}) => {
        clearTimeout(timer);
        unsubscribe();
        if ('worker' in outcome) {
          resolve(outcome.worker);
        } else {
          reject(outcome.error);
        }
      };
      const check = (timedOut: boolean) => {
        const worker = supervisor.workers.get(workerId);
        // A failure its restart policy answers with a restart is waited out, as the start's own.
        const over = supervisor.isOver(workerId);
        if (worker === undefined || (worker.state === 'stopped' && over)) {
          settle({error: new RbeeError('model_unavailable', `model "${name}": its worker was stopped while it started`)});
        } else if (isServing(worker)) {
          settle({worker});
        } else if (worker.state === 'failed' && over) {
          settle({error: new RbeeError('model_unavailable', `model "${name}" failed to start: ${worker.reason ?? 'its worker failed'}`)});
        } else if (timedOut) {
          const progress =
            worker.progress === null
              ? ''
              : ` (${worker.progress.phase} ${worker.progress.done}${worker.progress.total === null ? '' : `/${worker.progress.total}`})`;
          settle({
            error: new RbeeError(
              'worker_not_ready',
              `model "${name}" is still starting after ${settings.startTimeoutMs < 1_000 ? `${settings.startTimeoutMs} ms` : `${Math.round(settings.startTimeoutMs / 1000)} s`} on worker ${workerId}${progress}; try again shortly`,
            ),
          });
        }
      };
      unsubscribe = supervisor.onWorkerChange(() => check(false));
      timer = setTimeout(() => check(true), settings.startTimeoutMs);
      check(false);
    });
  }

  #stopIdle(): void {
    const now = Date.now();
    for (const worker of this.#options.supervisor.workers.values()) {
      const timeout = worker.spec.idle_timeout_ms;
      if (timeout === undefined || !isServing(worker) || worker.inFlight > 0 || this.#stopping.has(worker.id)) {
        continue;
      }
      const idleMs = now - worker.lastActiveAt.getTime();
      // A worker started for a request is not stopped before that request reached it (bounded, as for room).
      if (idleMs < timeout || (this.#awaitingFirst.has(worker.id) && idleMs < awaitFirstRequestMs)) {
        continue;
      }
      this.#stopping.add(worker.id);
      const name = worker.spec.name ?? worker.modelName;
      this.#announce('stopped-idle', name, {
        workerId: worker.id,
        device: worker.spec.device,
        reason: `no request for ${Math.round(idleMs / 1000)} s (idle timeout ${Math.round(timeout / 1000)} s)`,
      });
      this.#options.supervisor
        .stop(worker.id, `idle: no request for ${Math.round(idleMs / 1000)} s`)
        .catch(error => this.#options.log(`stopping idle worker ${worker.id}: ${(error as Error).message}`))
        .finally(() => this.#stopping.delete(worker.id));
    }
  }

  #announce(
    action: AutoscaleAction,
    model: string,
    details: {workerId?: string; device?: string; for?: string; reason: string; figures?: {need: number; free: number; headroom: number}},
  ): void {
    this.#options.log(`${action} ${model}${details.workerId === undefined ? '' : ` (${details.workerId})`}: ${details.reason}`);
    const event: AutoscaleEvent = {
      type: 'autoscale',
      at: new Date().toISOString(),
      action,
      model,
      worker_id: details.workerId ?? null,
      device: details.device ?? null,
      for: details.for ?? null,
      reason: details.reason,
      figures: details.figures ?? null,
    };
    this.#decisions.push(event);
    this.#decisions.splice(0, Math.max(0, this.#decisions.length - decisionsKept));
    this.#options.publish(event);
  }
}
