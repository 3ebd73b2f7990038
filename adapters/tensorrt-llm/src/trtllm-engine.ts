/**
 * A `trtllm-serve` subprocess as the engine: rbee's generations go to its OpenAI routes, the
 * heartbeat reads its /v1/models and its /metrics, a JSON array of the iteration statistics
 * gathered since the previous call (numActiveRequests, numQueuedRequests, gpuMemUsage, ...).
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import {
  WatchedEngine,
  engineJson,
  openAiStream,
  processTreeRss,
  type AdapterContext,
  type AdapterHeartbeat,
  type AdapterInferRequest,
  type GenerateResult,
} from 'rbee';

export type TrtllmLaunch = {
  command: string;
  args: string[];
  backend: string | undefined;
  kvCacheFreeGpuMemoryFraction: number | undefined;
  iterationStats: boolean;
};

type ModelList = {data?: Array<{id?: string}>};

/** One entry of trtllm-serve's /metrics array (TensorRT-LLM's IterationStats, as JSON). */
export type IterationStats = {
  iter?: number;
  numActiveRequests?: number;
  numQueuedRequests?: number;
  gpuMemUsage?: number;
  cpuMemUsage?: number;
  inflightBatchingStats?: {numPausedRequests?: number};
};

const count = (value: unknown): number | undefined => (typeof value === 'number' && Number.isFinite(value) && value >= 0 ? Math.round(value) : undefined);

export class TrtllmEngine {
  readonly #base: string;
  readonly #engine: WatchedEngine;
  readonly #optionsFile: string | null;
  #modelId: string;
  /** The last iteration seen: /metrics drains, so an idle engine answers [] and the memory figure stays. */
  #lastStats: IterationStats | null = null;

  private constructor(context: AdapterContext, base: string, launch: {command: string; args: string[]}, optionsFile: string | null) {
    this.#base = base;
    this.#optionsFile = optionsFile;
    // trtllm-serve names a model folder by its name; /v1/models says for sure once it is up.
    this.#modelId = path.basename(context.modelPath);
    this.#engine = WatchedEngine.spawn(context, launch, {name: 'trtllm-serve', onExit: () => this.#removeOptionsFile()});
  }

  /** The `trtllm-serve` arguments for a context: loopback only, on the given port. */
  static arguments(context: AdapterContext, launch: TrtllmLaunch, port: number, optionsFile: string | null): string[] {
    return [
      context.modelPath,
      '--host',
      '127.0.0.1',
      '--port',
      String(port),
      '--max_batch_size',
      String(context.parallel),
      '--max_seq_len',
      String(context.contextSize),
      ...(launch.backend === undefined ? [] : ['--backend', launch.backend]),
      ...(launch.kvCacheFreeGpuMemoryFraction === undefined ? [] : ['--kv_cache_free_gpu_memory_fraction', String(launch.kvCacheFreeGpuMemoryFraction)]),
      ...(optionsFile === null ? [] : ['--extra_llm_api_options', optionsFile]),
      ...launch.args,
    ];
  }

  static async start(context: AdapterContext, launch: TrtllmLaunch): Promise<TrtllmEngine> {
    const port = await context.freePort();
    // The PyTorch backend (the default) gathers iteration statistics only when asked to; the
    // TensorRT backend always does and refuses the key. A user's own options file wins.
    const userOptions = launch.args.some(arg => arg === '--extra_llm_api_options' || arg.startsWith('--extra_llm_api_options=') || arg === '--config');
    let optionsFile: string | null = null;
    if (launch.iterationStats && launch.backend !== 'tensorrt' && !userOptions) {
      optionsFile = path.join(os.tmpdir(), `rbee-trtllm-${context.workerId}-${port}.yml`);
      fs.writeFileSync(optionsFile, '# written by rbee:tensorrt-llm so that /metrics has iteration statistics\nenable_iter_perf_stats: true\n');
    }
    const args = TrtllmEngine.arguments(context, launch, port, optionsFile);
    context.log(`starting ${launch.command} ${args.join(' ')}`);
    // For cuda:N the hive has already narrowed CUDA_VISIBLE_DEVICES to the card.
    return new TrtllmEngine(context, `http://127.0.0.1:${port}`, {command: launch.command, args}, optionsFile);
  }

  get modelId(): string {
    return this.#modelId;
  }

  /** trtllm-serve listens once the model is loaded and answers /health 200 while it is healthy. */
  async ready(): Promise<boolean> {
    this.#engine.throwIfFailed();
    try {
      const health = await fetch(`${this.#base}/health`, {signal: AbortSignal.timeout(2_000)});
      await health.body?.cancel();
      if (!health.ok) {
        return false;
      }
      const models = await engineJson<ModelList>(`${this.#base}/v1/models`, {timeoutMs: 2_000});
      const id = models.data?.find(model => typeof model.id === 'string')?.id;
      if (id === undefined) {
        return false;
      }
      this.#modelId = id;
      return true;
    } catch {
      return false;
    }
  }

  async infer(request: AdapterInferRequest): Promise<GenerateResult> {
    this.#engine.throwIfFailed();
    try {
      return await openAiStream(this.#base, request, {model: this.#modelId});
    } catch (error) {
      return this.#engine.explain(error);
    }
  }

  async heartbeat(): Promise<AdapterHeartbeat> {
    if (this.#engine.failure !== null) {
      return {error: this.#engine.failure};
    }
    const ramUsed = await processTreeRss(this.#engine.pid);
    const memory: AdapterHeartbeat = ramUsed === undefined ? {} : {ram_used: ramUsed};
    let models: ModelList;
    let stats: unknown;
    try {
      // The endpoint waits up to 2 s for statistics when there are none.
      [models, stats] = await Promise.all([
        engineJson<ModelList>(`${this.#base}/v1/models`, {timeoutMs: 3_000}),
        engineJson<unknown>(`${this.#base}/metrics`, {timeoutMs: 4_000}),
      ]);
      this.#engine.answered();
    } catch (error) {
      return this.#engine.unanswered(error, memory);
    }
    const iterations = Array.isArray(stats) ? stats.filter((entry): entry is IterationStats => typeof entry === 'object' && entry !== null) : [];
    const latest = iterations.at(-1);
    const idle = latest === undefined;
    if (latest !== undefined) {
      this.#lastStats = latest;
    }
    const last = this.#lastStats;
    const vramUsed = count(last?.gpuMemUsage);
    return {
      ...memory,
      loaded_models: (models.data ?? []).flatMap(model => (typeof model.id === 'string' ? [model.id] : [])),
      // Until the engine has reported one iteration (statistics off, or nothing run yet) the
      // worker's own queue figures stand; after that no new iteration means nothing is running.
      ...(last === null
        ? {}
        : {
            batch_size: idle ? 0 : (count(latest.numActiveRequests) ?? 0),
            queue_depth: idle ? 0 : (count(latest.numQueuedRequests) ?? 0) + (count(latest.inflightBatchingStats?.numPausedRequests) ?? 0),
          }),
      ...(vramUsed === undefined ? {} : {vram_used: vramUsed, vram_allocations: {[this.#modelId]: vramUsed}}),
    };
  }

  async stop(): Promise<void> {
    await this.#engine.stop(8_000);
    this.#removeOptionsFile();
  }

  #removeOptionsFile(): void {
    if (this.#optionsFile !== null) {
      fs.rmSync(this.#optionsFile, {force: true});
    }
  }
}
