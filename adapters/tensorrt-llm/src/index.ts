/**
 * rbee's TensorRT-LLM adapter, written against the public adapter API like any plugin: the worker
 * runs `trtllm-serve <model>` on a loopback port and talks to its OpenAI-compatible API. Its
 * heartbeat carries the batch fields from TensorRT-LLM's iteration statistics (/metrics):
 * running and queued requests and the GPU memory the executor holds.
 *
 *   // rbee.config.ts
 *   export default defineConfig({types: {'tensorrt-llm': {command: '/opt/trtllm/bin/trtllm-serve'}}});
 *   // rbee worker spawn --type tensorrt-llm --model /models/TinyLlama-1.1B-Chat-v1.0 --device cuda:0
 */
import {z} from 'zod';
import {RbeeError, defineAdapter, findExecutable, parseAdapterOptions, type AdapterBackends, type AdapterContext, type RbeeAdapter} from 'rbee';
import {TrtllmEngine} from './trtllm-engine.js';

const name = 'rbee:tensorrt-llm';

export const TrtllmOptionsSchema = z.strictObject({
  /** The trtllm-serve program (default: RBEE_TRTLLM_SERVE, else `trtllm-serve` on PATH). Spawned directly, never through a shell. */
  command: z.string().min(1).optional(),
  /** Extra `trtllm-serve` arguments, appended as given. */
  args: z.array(z.string()).default([]),
  /** `--backend` (trtllm-serve's default when absent: pytorch). */
  backend: z.enum(['pytorch', 'tensorrt', '_autodeploy']).optional(),
  /** `--kv_cache_free_gpu_memory_fraction`: the share of free GPU memory the KV cache may take. */
  kvCacheFreeGpuMemoryFraction: z.number().gt(0).max(1).optional(),
  /**
   * Turn on iteration statistics (`enable_iter_perf_stats`, through an --extra_llm_api_options
   * file rbee writes) so that /metrics feeds the heartbeat. Skipped for the TensorRT backend,
   * which always has them, and when `args` bring their own options file.
   */
  iterationStats: z.boolean().default(true),
});
export type TrtllmOptions = z.input<typeof TrtllmOptionsSchema>;

/** TensorRT-LLM runs on NVIDIA GPUs only; no speed is declared: it has not been measured against the other engines here. */
function backendsOf(command: string): AdapterBackends {
  const unavailable =
    findExecutable(command) === undefined
      ? `no trtllm-serve program "${command}": install TensorRT-LLM, or set RBEE_TRTLLM_SERVE or the adapter's \`command\` option`
      : undefined;
  return {cuda: unavailable === undefined ? {} : {unavailable}};
}

export default function tensorrtLlm(options?: TrtllmOptions): RbeeAdapter {
  const settings = parseAdapterOptions(name, TrtllmOptionsSchema, options);
  const command = settings.command ?? process.env.RBEE_TRTLLM_SERVE ?? 'trtllm-serve';
  let engine: TrtllmEngine | null = null;

  const running = () => {
    if (engine === null) {
      throw new RbeeError('worker_not_ready', 'the TensorRT-LLM engine is not started');
    }
    return engine;
  };

  return defineAdapter({
    name,
    type: 'tensorrt-llm',
    adapterType: 'tensorrt-llm',
    // A Hugging Face checkpoint folder or a built engine folder (or a file trtllm-serve accepts).
    modelFormat: 'any',
    engineOption: 'command',
    backends: () => backendsOf(command),
    description: `TensorRT-LLM through a \`${command}\` subprocess (OpenAI API, in-flight batching)`,
    async start(context: AdapterContext) {
      engine = await TrtllmEngine.start(context, {
        command,
        args: settings.args,
        backend: settings.backend,
        kvCacheFreeGpuMemoryFraction: settings.kvCacheFreeGpuMemoryFraction,
        iterationStats: settings.iterationStats,
      });
    },
    ready: async () => running().ready(),
    infer: request => running().infer(request),
    heartbeat: async () => running().heartbeat(),
    async stop() {
      await engine?.stop();
    },
  });
}
