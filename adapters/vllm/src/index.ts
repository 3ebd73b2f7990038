/**
 * rbee's vLLM adapter, written against the public adapter API like any plugin: the worker runs
 * `vllm serve <model>` on a loopback port and talks to its OpenAI-compatible API. A batch engine,
 * so its heartbeat carries the enhanced fields: loaded models, running and waiting requests,
 * throughput, and the VRAM its processes hold.
 *
 *   // rbee.config.ts
 *   export default defineConfig({types: {vllm: {command: '/opt/vllm/bin/vllm', maxModelLen: 8192}}});
 *   // rbee worker spawn --type vllm --model /models/Llama-3.2-1B-Instruct --device cuda:0
 */
import {z} from 'zod';
import {
  RbeeError,
  defineAdapter,
  findExecutable,
  parseAdapterOptions,
  type AdapterBackends,
  type AdapterContext,
  type DeviceBackend,
  type RbeeAdapter,
} from 'rbee';
import {VllmEngine} from './vllm-engine.js';

const name = 'rbee:vllm';

export const VllmOptionsSchema = z.strictObject({
  /** The vllm program (default: RBEE_VLLM, else `vllm` on PATH). Spawned directly, never through a shell. */
  command: z.string().min(1).optional(),
  /** Extra `vllm serve` arguments, appended as given (later flags win in vLLM's parser). */
  args: z.array(z.string()).default([]),
  /** The name vLLM serves the model as (default: the worker's model name, which the hive routes by). */
  servedModelName: z.string().min(1).optional(),
  /** `--max-model-len` (default: the worker's context size). */
  maxModelLen: z.number().int().min(16).max(10_485_760).optional(),
  /** `--gpu-memory-utilization`: the fraction of the card vLLM may take (vLLM's default is 0.9). */
  gpuMemoryUtilization: z.number().gt(0).max(1).optional(),
});
export type VllmOptions = z.input<typeof VllmOptionsSchema>;

/**
 * vLLM runs on NVIDIA GPUs, and on CPUs with its CPU build (which scripts/install-vllm.sh makes);
 * no speed is declared: it has not been measured against the other engines here.
 */
function backendsOf(command: string): AdapterBackends {
  const unavailable =
    findExecutable(command) === undefined
      ? `no vllm program "${command}": install vLLM (scripts/install-vllm.sh builds its CPU version), or set RBEE_VLLM or the adapter's \`command\` option`
      : undefined;
  const runs: DeviceBackend[] = ['cpu', 'cuda'];
  return Object.fromEntries(runs.map(backend => [backend, unavailable === undefined ? {} : {unavailable}]));
}

export default function vllm(options?: VllmOptions): RbeeAdapter {
  const settings = parseAdapterOptions(name, VllmOptionsSchema, options);
  const command = settings.command ?? process.env.RBEE_VLLM ?? 'vllm';
  let engine: VllmEngine | null = null;

  const running = () => {
    if (engine === null) {
      throw new RbeeError('worker_not_ready', 'the vLLM engine is not started');
    }
    return engine;
  };

  return defineAdapter({
    name,
    type: 'vllm',
    adapterType: 'vllm',
    // A Hugging Face model folder, as vLLM usually loads, or a GGUF file.
    modelFormat: 'any',
    engineOption: 'command',
    backends: () => backendsOf(command),
    description: `vLLM through a \`${command} serve\` subprocess (OpenAI API, continuous batching)`,
    async start(context: AdapterContext) {
      engine = await VllmEngine.start(context, {
        command,
        args: settings.args,
        servedModelName: settings.servedModelName,
        maxModelLen: settings.maxModelLen,
        gpuMemoryUtilization: settings.gpuMemoryUtilization,
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
