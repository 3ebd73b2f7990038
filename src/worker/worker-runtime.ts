import {RbeeError} from '../errors.js';
import type {Heartbeat, WorkerStatus} from '../protocol/wire.js';
import type {Engine} from './engine.js';
import {RequestQueue} from './request-queue.js';
import {WorkerStats} from './worker-stats.js';

export type WorkerRuntimeOptions = {
  workerId: string;
  modelName: string;
  device: string;
  parallel: number;
  maxQueue: number;
};

export type WorkerHealth = {
  status: WorkerStatus | 'draining';
  worker_id: string;
  model: string;
  error?: string;
};

/** The worker's state, shared by its HTTP server and its heartbeat loop. */
export class WorkerRuntime {
  readonly options: WorkerRuntimeOptions;
  readonly stats = new WorkerStats();
  readonly queue: RequestQueue;
  #engine: Engine | null = null;
  #failure: string | null = null;
  #stopping = false;
  #loadProgress = 0;

  constructor(options: WorkerRuntimeOptions) {
    this.options = options;
    this.queue = new RequestQueue({capacity: options.parallel, maxWaiting: options.maxQueue});
  }

  get engine(): Engine | null {
    return this.#engine;
  }

  setEngine(engine: Engine): void {
    this.#engine = engine;
  }

  setLoadProgress(fraction: number): void {
    this.#loadProgress = Math.min(1, Math.max(0, fraction));
  }

  fail(reason: string): void {
    this.#failure = reason;
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
    if (this.#engine === null) {
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
    };
  }

  /** The engine, or a 503 while the model loads or after a failure. */
  readyEngine(): Engine {
    if (this.#engine === null || this.#failure !== null) {
      throw new RbeeError('worker_not_ready', `worker ${this.options.workerId} is ${this.status()}: it cannot generate yet`);
    }
    return this.#engine;
  }

  async heartbeat(): Promise<Heartbeat> {
    const engine = this.#engine;
    const memory = engine === null
      ? {vramUsed: 0, vramTotal: 0, ramUsed: process.memoryUsage().rss}
      : await engine.memory();
    return {
      worker_id: this.options.workerId,
      status: this.status(),
      model: this.options.modelName,
      device: this.options.device,
      vram_used: memory.vramUsed,
      vram_total: memory.vramTotal,
      ram_used: memory.ramUsed,
      requests_total: this.stats.requestsTotal,
      tokens_generated: this.stats.tokensGenerated,
      uptime_seconds: this.stats.uptimeSeconds(),
      last_request_at: this.stats.lastRequestAt?.toISOString() ?? null,
      ...(engine === null ? {} : {adapter_type: engine.adapterType, backend: engine.backend}),
      ...(engine?.threads === undefined ? {} : {threads: engine.threads}),
      queue_depth: this.queue.depth,
      batch_size: this.queue.running,
      throughput_tokens_per_second: this.stats.takeThroughput(),
      ...(this.#failure === null ? {} : {error: this.#failure}),
      ...(engine === null && this.#failure === null ? {load_progress: this.#loadProgress} : {}),
    };
  }
}
