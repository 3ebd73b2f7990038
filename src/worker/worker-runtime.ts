import {createCpuMeter} from './cpu-meter.js';
import {RbeeError} from '../errors.js';
import type {AdapterContext, AdapterHeartbeat, RbeeAdapter} from '../adapters/adapter-api.js';
import type {GroupMembership, Heartbeat, WorkerHealth, WorkerStatus} from '../protocol/wire.js';
import {groupHeartbeatFields} from './group-heartbeat.js';
import {RequestQueue} from './request-queue.js';
import {WorkerStats} from './worker-stats.js';

export type WorkerRuntimeOptions = {
  workerId: string;
  modelName: string;
  device: string;
  parallel: number;
  maxQueue: number;
  group?: GroupMembership | undefined;
  /** A coordinator's keys to its shards' ports, by worker id. */
  shardKeys?: Record<string, string> | undefined;
  /** How long a coordinator waits for each shard's /health: well inside one heartbeat interval. */
  groupProbeTimeoutMs?: number | undefined;
  /**
   * How long a heartbeat waits for the adapter's figures before it goes with the last ones: an engine
   * slow to answer (busy loading, a starved machine) must not delay the heartbeat past the hive's limit.
   */
  engineReportTimeoutMs?: number | undefined;
};

/** The worker's state, shared by its HTTP server and its heartbeat loop. */
export class WorkerRuntime {
  readonly options: WorkerRuntimeOptions;
  readonly stats = new WorkerStats();
  readonly queue: RequestQueue;
  readonly adapter: RbeeAdapter;
  readonly context: AdapterContext;
  #ready = false;
  #failure: string | null = null;
  #stopping = false;
  /** null until the adapter reports progress: only then can the hive tell a stalled load from a slow one. */
  #loadProgress: number | null = null;
  #lastVram: {vram_used: number; vram_total: number} | null = null;
  /** The adapter's last figures, and its report still being gathered (one at a time, however slow). */
  #lastEngine: AdapterHeartbeat = {};
  #engineReport: Promise<AdapterHeartbeat> | null = null;
  readonly #cpu = createCpuMeter();

  constructor(options: WorkerRuntimeOptions, adapter: RbeeAdapter, context: AdapterContext) {
    this.options = options;
    this.adapter = adapter;
    this.context = context;
    this.queue = new RequestQueue({capacity: options.parallel, maxWaiting: options.maxQueue});
  }

  markReady(): void {
    this.#ready = true;
  }

  get ready(): boolean {
    return this.#ready;
  }

  setLoadProgress(fraction: number): void {
    this.#loadProgress = Math.min(1, Math.max(this.#loadProgress ?? 0, fraction));
  }

  fail(reason: string): void {
    this.#failure ??= reason;
  }

  get failure(): string | null {
    return this.#failure;
  }

  markStopping(): void {
    this.#stopping = true;
    this.queue.drain();
  }

  status(): WorkerStatus {
    if (this.#failure !== null) {
      return 'error';
    }
    if (this.#stopping) {
      return 'stopping';
    }
    if (!this.#ready) {
      return 'starting';
    }
    return this.queue.running >= this.queue.capacity ? 'busy' : 'ready';
  }

  health(): WorkerHealth {
    const status = this.queue.draining && !this.#stopping ? 'draining' : this.status();
    return {
      status,
      worker_id: this.options.workerId,
      model: this.options.modelName,
      ...(this.#failure === null ? {} : {error: this.#failure}),
      ...this.#lastVram,
    };
  }

  /** Throws a 503 while the model loads, after a failure, or while stopping. */
  assertServing(): void {
    if (!this.#ready || this.#failure !== null) {
      throw new RbeeError('worker_not_ready', `worker ${this.options.workerId} is ${this.status()}: it cannot generate now`);
    }
  }

  /**
   * The adapter's heartbeat figures, or its last ones when it has not answered within
   * `engineReportTimeoutMs`; the report it owes lands in the next heartbeat, an error included.
   */
  async #engineFigures(): Promise<AdapterHeartbeat> {
    const adapter = this.adapter;
    if (adapter.heartbeat === undefined) {
      return {};
    }
    this.#engineReport ??= (async () => {
      try {
        return await adapter.heartbeat!(this.context);
      } catch (error) {
        return {error: `adapter ${adapter.name} heartbeat failed: ${(error as Error).message}`};
      }
    })().then(report => {
      this.#lastEngine = report;
      this.#engineReport = null;
      return report;
    });
    const limit = this.options.engineReportTimeoutMs;
    if (limit === undefined) {
      return this.#engineReport;
    }
    let timer: NodeJS.Timeout | undefined;
    const late = new Promise<AdapterHeartbeat>(resolve => {
      timer = setTimeout(() => resolve(this.#lastEngine), limit);
    });
    try {
      return await Promise.race([this.#engineReport, late]);
    } finally {
      clearTimeout(timer);
    }
  }

  async heartbeat(): Promise<Heartbeat> {
    const engine: AdapterHeartbeat = this.#ready && this.#failure === null ? await this.#engineFigures() : {};
    if (engine.error !== undefined) {
      this.fail(engine.error);
    }
    const {error: _error, ...figures} = engine;
    // Device memory only when the engine measured it: a group's sums must not count a guess.
    const vram = figures.vram_used === undefined ? null : {vram_used: figures.vram_used, vram_total: figures.vram_total ?? 0};
    this.#lastVram = vram;
    const group =
      this.options.group === undefined
        ? {}
        : await groupHeartbeatFields(
            this.options.group,
            this.#ready && this.#failure === null,
            vram,
            this.options.groupProbeTimeoutMs,
            this.options.shardKeys ?? {},
          );
    return {
      worker_id: this.options.workerId,
      status: this.status(),
      model: this.options.modelName,
      device: this.options.device,
      adapter_type: this.adapter.adapterType ?? this.adapter.type,
      vram_used: 0,
      vram_total: 0,
      ram_used: process.memoryUsage().rss,
      cpu_percent: this.#cpu.sample(),
      requests_total: this.stats.requestsTotal,
      tokens_generated: this.stats.tokensGenerated,
      uptime_seconds: this.stats.uptimeSeconds(),
      last_request_at: this.stats.lastRequestAt?.toISOString() ?? null,
      batch_size: this.queue.running,
      throughput_tokens_per_second: this.stats.takeThroughput(),
      ...figures,
      // Requests waiting in the worker's own queue are waiting too, whatever the engine queues.
      queue_depth: this.queue.depth + (figures.queue_depth ?? 0),
      ...(this.#failure === null ? {} : {error: this.#failure}),
      ...(!this.#ready && this.#failure === null && this.#loadProgress !== null ? {load_progress: this.#loadProgress} : {}),
      ...group,
    };
  }
}
