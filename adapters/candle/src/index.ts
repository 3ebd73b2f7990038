/**
 * rbee's candle adapter: the bespoke worker engine, Rust and Candle in the worker process
 * (native/, built by `npm run build:native`), written against the public adapter API like any
 * plugin. It loads the binding lazily: a machine without the built .node can still load this
 * adapter, and `start` then fails with an error that says how to build it.
 *
 *   rbee worker spawn --type candle --model default --device cpu
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
  type RbeeAdapter,
} from 'rbee';

const name = 'rbee:candle';

export const CandleOptionsSchema = z.strictObject({
  /** CPU threads for the matrix multiplications (default: the worker's `--threads`, else all cores). */
  threads: z.number().int().min(1).max(1_024).optional(),
});
export type CandleOptions = z.input<typeof CandleOptionsSchema>;

/**
 * Measured against llama.cpp on the same model, machine and run (bench/candle-engine.ts); the
 * llamacpp adapter cites the same files for its rank 1. Decode is what a served request mostly
 * waits for, so it decides the rank even where candle's prompt processing is faster.
 */
const measured = {
  cpu: {
    rank: 2,
    source: "bench/results/2026-11-27-cpu-vm-candle.md: 2-core VM, Gemma 3 270M Q4_K_M: candle decodes 24.7 tok/s to llama.cpp's 49.5 (0.5x), prompts at 0.29x",
  },
  cuda: {
    rank: 2,
    source:
      'bench/results/2026-11-27-gpu-h100-gemma270m-candle.md and bench/results/2026-11-27-gpu-h100-synthetic8b-candle.md: H100, candle prompts 1.10x (270M) and 1.25x (8B) llama.cpp but decodes at 0.18x and 0.49x',
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
  let threads: number | undefined;

  const loaded = (): NativeModel => {
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
    async start(context: AdapterContext) {
      threads = settings.threads ?? context.threads;
      context.reportLoadProgress(0);
      model = await loadNativeModel({
        path: context.modelPath,
        device: context.device,
        contextSize: context.contextSize,
        // One slot (KV cache) per request the worker admits at once: --parallel N runs N streams.
        parallel: context.parallel,
        ...(threads === undefined ? {} : {threads}),
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
      return model !== null;
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
      model?.close();
      model = null;
    },
  });
}
