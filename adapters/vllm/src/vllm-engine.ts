/**
 * A `vllm serve` subprocess as the engine: rbee's generations go to its OpenAI routes, the
 * heartbeat reads its /v1/models, its Prometheus /metrics (running and waiting requests, the
 * generated-token counter) and the memory of its processes.
 */
import {
  WatchedEngine,
  cudaIndex,
  engineAuthorization,
  engineJson,
  groupVram,
  processTreeRss,
  openAiStream,
  parsePrometheusText,
  type AdapterContext,
  type AdapterHeartbeat,
  type AdapterInferRequest,
  type GenerateResult,
} from 'rbee';

export type VllmLaunch = {
  command: string;
  args: string[];
  servedModelName: string | undefined;
  maxModelLen: number | undefined;
  gpuMemoryUtilization: number | undefined;
};

type ModelList = {data?: Array<{id?: string}>};

export class VllmEngine {
  readonly servedName: string;
  readonly #base: string;
  readonly #engine: WatchedEngine;
  readonly #context: AdapterContext;
  #lastTokens: {count: number; at: number} | null = null;

  private constructor(context: AdapterContext, base: string, engine: WatchedEngine, servedName: string) {
    this.#context = context;
    this.#base = base;
    this.#engine = engine;
    this.servedName = servedName;
  }

  /** The `vllm serve` arguments for a context: loopback only, on the given port. */
  static arguments(context: AdapterContext, launch: VllmLaunch, port: number): string[] {
    return [
      'serve',
      context.modelPath,
      '--host',
      '127.0.0.1',
      '--port',
      String(port),
      '--served-model-name',
      launch.servedModelName ?? context.modelName,
      '--max-model-len',
      String(launch.maxModelLen ?? context.contextSize),
      '--max-num-seqs',
      String(context.parallel),
      ...(launch.gpuMemoryUtilization === undefined ? [] : ['--gpu-memory-utilization', String(launch.gpuMemoryUtilization)]),
      ...launch.args,
    ];
  }

  static async start(context: AdapterContext, launch: VllmLaunch): Promise<VllmEngine> {
    const port = await context.freePort();
    const args = VllmEngine.arguments(context, launch, port);
    context.log(`starting ${launch.command} ${args.join(' ')}`);
    // For cuda:N the hive has already narrowed CUDA_VISIBLE_DEVICES to the card.
    // The key by environment (vLLM reads VLLM_API_KEY like --api-key), so it is not in its argv.
    const engine = WatchedEngine.spawn(context, {command: launch.command, args, env: {VLLM_API_KEY: context.engineKey}}, {name: 'vllm'});
    return new VllmEngine(context, `http://127.0.0.1:${port}`, engine, launch.servedModelName ?? context.modelName);
  }

  get pid(): number {
    return this.#engine.pid;
  }

  get #auth(): Record<string, string> {
    return engineAuthorization(this.#context.engineKey);
  }

  /** vLLM answers /health only once the model is loaded; ready when /v1/models also lists it. */
  async ready(): Promise<boolean> {
    this.#engine.throwIfFailed();
    try {
      const health = await fetch(`${this.#base}/health`, {signal: AbortSignal.timeout(2_000), headers: this.#auth});
      await health.body?.cancel();
      if (!health.ok) {
        return false;
      }
      const models = await engineJson<ModelList>(`${this.#base}/v1/models`, {timeoutMs: 2_000, apiKey: this.#context.engineKey});
      return (models.data ?? []).some(model => model.id === this.servedName);
    } catch {
      return false;
    }
  }

  async infer(request: AdapterInferRequest): Promise<GenerateResult> {
    this.#engine.throwIfFailed();
    try {
      return await openAiStream(this.#base, request, {model: this.servedName, apiKey: this.#context.engineKey});
    } catch (error) {
      return this.#engine.explain(error);
    }
  }

  async heartbeat(): Promise<AdapterHeartbeat> {
    if (this.#engine.failure !== null) {
      return {error: this.#engine.failure};
    }
    const [ramUsed, vram] = await Promise.all([processTreeRss(this.#engine.pid), this.#vram()]);
    const memory: AdapterHeartbeat = {
      ...(ramUsed === undefined ? {} : {ram_used: ramUsed}),
      ...(vram === undefined ? {} : {vram_used: vram.used, ...(vram.total === undefined ? {} : {vram_total: vram.total})}),
      vram_allocations: {[this.servedName]: vram?.used ?? 0},
    };
    let models: ModelList;
    let metrics: Map<string, number>;
    try {
      [models, metrics] = await Promise.all([
        engineJson<ModelList>(`${this.#base}/v1/models`, {timeoutMs: 3_000, apiKey: this.#context.engineKey}),
        fetch(`${this.#base}/metrics`, {signal: AbortSignal.timeout(3_000), headers: this.#auth}).then(async response => {
          if (!response.ok) {
            throw new Error(`/metrics answered ${response.status}`);
          }
          return parsePrometheusText(await response.text());
        }),
      ]);
      this.#engine.answered();
    } catch (error) {
      return this.#engine.unanswered(error, memory);
    }
    const generated = metrics.get('vllm:generation_tokens_total');
    return {
      ...memory,
      loaded_models: (models.data ?? []).flatMap(model => (typeof model.id === 'string' ? [model.id] : [])),
      batch_size: Math.round(metrics.get('vllm:num_requests_running') ?? 0),
      queue_depth: Math.round(metrics.get('vllm:num_requests_waiting') ?? 0),
      ...(generated === undefined ? {} : {throughput_tokens_per_second: this.#throughput(generated)}),
    };
  }

  /** vLLM shuts its EngineCore down on SIGTERM, which can take a few seconds. */
  async stop(): Promise<void> {
    await this.#engine.stop(8_000);
  }

  /** Tokens per second since the previous heartbeat, from vLLM's generated-token counter. */
  #throughput(count: number): number {
    const now = Date.now();
    const previous = this.#lastTokens;
    this.#lastTokens = {count, at: now};
    if (previous === null || now <= previous.at || count < previous.count) {
      return 0;
    }
    return Math.round(((count - previous.count) / ((now - previous.at) / 1000)) * 100) / 100;
  }

  async #vram(): Promise<{used: number; total: number | undefined} | undefined> {
    const cuda = cudaIndex(this.#context.device);
    return cuda === undefined ? undefined : groupVram(this.#engine.pid, cuda);
  }
}
