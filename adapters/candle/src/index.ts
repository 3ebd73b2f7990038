/**
 * rbee's candle adapter: the bespoke worker engine, Rust and Candle in the worker process
 * (native/, built by `npm run build:native`), written against the public adapter API like any
 * plugin. It loads the binding lazily: a machine without the built .node can still load this
 * adapter, and `start` then fails with an error that says how to build it.
 *
 *   rbee worker spawn --type candle --model default --device cpu
 *   rbee worker spawn-group --type candle --model ./m.gguf --devices cpu,cpu         (tensor parallel, 2 ranks)
 *   rbee worker spawn-group --type candle --model ./m.gguf --devices cuda:0,cuda:1   (one GPU a rank)
 */
import {z} from 'zod';
import {
  RbeeError,
  defineAdapter,
  deviceBackend,
  deviceBackends,
  loadNativeBinding,
  loadNativeModel,
  nativeBackends,
  parseAdapterOptions,
  type AdapterBackends,
  type AdapterContext,
  type AdapterInferRequest,
  type GenerateResult,
  type NativeModel,
  type NativeShard,
  type RbeeAdapter,
} from 'rbee';
import {checkCandleGroup, coordinatorOptions, engineDevice, startShard} from './tensor-parallel.js';

const name = 'rbee:candle';

export const CandleOptionsSchema = z.strictObject({
  /** CPU threads for the matrix multiplications (default: the worker's `--threads`, else all cores). */
  threads: z.number().int().min(1).max(1_024).optional(),
  /** Tensor-parallel groups: how long one collective may wait for the other ranks (default 5000 ms; a killed rank is seen at once). */
  groupTimeoutMs: z.number().int().min(100).max(600_000).optional(),
});
export type CandleOptions = z.input<typeof CandleOptionsSchema>;

/**
 * Measured against llama.cpp on the same model, machine and run (bench/candle-engine.ts); the
 * llamacpp adapter cites the same files for its ranks. Decode is what a served request mostly
 * waits for, so it decides the rank even where candle's prompt processing is faster.
 */
const measured = {
  cpu: {
    rank: 2,
    source: "bench/results/2026-11-27-cpu-vm-candle.md: 2-core VM, Gemma 3 270M Q4_K_M: candle decodes 24.7 tok/s to llama.cpp's 49.5 (0.5x), prompts at 0.29x",
  },
  // The graph forward path, the engine's CUDA default since this measurement (tensor before).
  cuda: {
    rank: 1,
    source:
      'bench/results/2026-12-06-gpu-h100-issue11-same-run.md: H100, same run, the graph path decodes 1.15x llama.cpp (CUDA build, CUDA graphs) on both Gemma 3 270M (1114 vs 968 tok/s) and an 8B-shaped Q4_K_M (300 vs 262); prompts 2.3x (270M) and 0.92x (8B)',
  },
} as const;

/**
 * Where this machine's build of the engine runs: the backends its .node was built with (cpu,
 * and cuda or metal with that cargo feature); every backend unavailable, saying how to build it,
 * when there is no .node for this platform.
 */
async function builtBackends(): Promise<AdapterBackends> {
  let missing: string | null = null;
  await loadNativeBinding().catch((error: unknown) => {
    missing = (error as Error).message;
  });
  const built = missing === null ? await nativeBackends() : [];
  return Object.fromEntries(
    deviceBackends.map(backend => {
      const speed = backend === 'metal' ? {} : {speed: measured[backend]};
      if (missing !== null) {
        return [backend, {unavailable: missing, ...speed}];
      }
      return [
        backend,
        built.includes(backend)
          ? speed
          : {
              unavailable: `this build of rbee's candle engine runs on ${built.join(', ')}, not ${backend}: rebuild it with that feature (native/README.md)`,
              ...speed,
            },
      ];
    }),
  );
}

export default function candle(options?: CandleOptions): RbeeAdapter {
  const settings = parseAdapterOptions(name, CandleOptionsSchema, options);
  let model: NativeModel | null = null;
  let shard: NativeShard | null = null;
  let threads: number | undefined;

  const loaded = (): NativeModel => {
    if (shard !== null) {
      throw new RbeeError('invalid_request', 'this worker is a shard of a worker group: send requests to its coordinator (or the hive)');
    }
    if (model === null) {
      throw new RbeeError('worker_not_ready', 'the candle engine is not started');
    }
    return model;
  };

  return defineAdapter({
    name,
    type: 'candle',
    adapterType: 'candle',
    description: "rbee's Rust/Candle engine in process (GGUF; build it with `npm run build:native`)",
    modelFormat: 'gguf',
    backends: builtBackends,
    // Groups: tensor parallelism on the CPU or over CUDA GPUs, each rank reading its slice of the GGUF (native/src/model/shard).
    groups: true,
    checkGroup: checkCandleGroup,
    async start(context: AdapterContext) {
      threads = settings.threads ?? context.threads;
      context.reportLoadProgress(0);
      const group = context.group;
      if (group?.role === 'shard') {
        shard = await startShard(context, group, {threads, timeoutMs: settings.groupTimeoutMs});
        return;
      }
      model = await loadNativeModel({
        path: context.modelPath,
        device: engineDevice(context.device),
        contextSize: context.contextSize,
        // One slot (KV cache) per request the worker admits at once: --parallel N runs N streams.
        parallel: context.parallel,
        ...(threads === undefined ? {} : {threads}),
        ...(group?.role === 'coordinator' ? {tensorParallel: coordinatorOptions(group, settings.groupTimeoutMs)} : {}),
        onProgress: fraction => context.reportLoadProgress(fraction),
      });
      const {info} = model;
      context.log(`candle: ${info.architecture} (${info.layers} layers, ${info.vocabSize} tokens) on ${info.device}, context ${info.contextSize}`);
      if (info.parallel < context.parallel) {
        context.log(`candle: the ${info.forward} path serves ${info.parallel} stream(s) at once; the other admitted requests wait in the engine`);
      } else if (info.parallel > 1) {
        context.log(`candle: ${info.parallel} streams at once, batched (a KV cache of ${info.contextSize} positions each)`);
      }
    },
    async ready() {
      return model !== null || shard !== null;
    },
    async infer(request: AdapterInferRequest): Promise<GenerateResult> {
      const result = await loaded().generate({
        ...(request.kind === 'chat' ? {messages: request.messages} : {prompt: request.prompt}),
        maxTokens: request.maxTokens,
        temperature: request.temperature,
        ...(request.topK === undefined ? {} : {topK: request.topK}),
        ...(request.topP === undefined ? {} : {topP: request.topP}),
        ...(request.seed === undefined ? {} : {seed: request.seed}),
        stop: request.stop,
        signal: request.signal,
        onText: request.onText,
      });
      return {text: result.text, tokensGenerated: result.tokensGenerated, promptTokens: result.promptTokens, finishReason: result.finishReason};
    },
    async heartbeat(context: AdapterContext) {
      if (shard !== null) {
        // A GPU rank's card, as a lone worker reports its own (the coordinator sums its group's).
        const memory = shard.memory();
        return {
          backend: deviceBackend(context.device),
          ...(threads === undefined ? {} : {threads}),
          ram_used: memory.rss,
          vram_used: memory.vramUsed ?? 0,
          vram_total: memory.vramTotal ?? 0,
        };
      }
      const memory = loaded().memory();
      const batch = loaded().batch();
      return {
        backend: deviceBackend(context.device),
        // The engine's own figures: streams in its batch, and admitted requests waiting for a slot.
        batch_size: batch.active,
        queue_depth: batch.waiting,
        ...(threads === undefined ? {} : {threads}),
        ram_used: memory.rss,
        vram_used: memory.vramUsed ?? 0,
        vram_total: memory.vramTotal ?? 0,
      };
    },
    async stop() {
      shard?.close();
      shard = null;
      model?.close();
      model = null;
    },
  });
}
