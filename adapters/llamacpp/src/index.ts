/**
 * rbee's llama.cpp adapter, written against the public adapter API like any plugin. Two engines:
 * node-llama-cpp in the worker process (the default), or a real llama-server subprocess when a
 * binary is configured (`serverPath`, RBEE_LLAMA_SERVER) or `engine: 'llama-server'` is asked for.
 */
import {z} from 'zod';
import {RbeeError, defineAdapter, findExecutable, findLlamaCpp, parseAdapterOptions, type AdapterBackends, type AdapterContext, type RbeeAdapter} from 'rbee';
import {EmbeddedLlamaCpp} from './embedded-engine.js';
import {LlamaServerEngine} from './llama-server-engine.js';
import {acceptsConnections, RpcShardEngine} from './rpc-shard-engine.js';

const name = 'rbee:llamacpp';

export const LlamaCppOptionsSchema = z.strictObject({
  engine: z.enum(['auto', 'embedded', 'llama-server']).default('auto'),
  /** A llama-server binary; with `engine: 'auto'` its presence selects llama-server. */
  serverPath: z.string().min(1).optional(),
  /** Extra llama-server arguments, appended as given (an array: no shell involved). */
  serverArgs: z.array(z.string()).default([]),
  /** A ggml-rpc-server binary, for the shards of worker groups. */
  rpcServerPath: z.string().min(1).optional(),
  /** How long a group's coordinator waits for its shards' engines to listen. */
  shardWaitMs: z.number().int().min(1_000).max(3_600_000).default(120_000),
});
export type LlamaCppOptions = z.input<typeof LlamaCppOptionsSchema>;

function findProgram(program: 'llama-server' | 'ggml-rpc-server', configured: string | undefined, option: string, variable: string): string {
  const found = configured ?? process.env[variable] ?? findExecutable(program) ?? findLlamaCpp()?.programs[program];
  if (found === undefined) {
    throw new RbeeError('engine_error', `no ${program} found: set ${option}, ${variable}, put it on PATH, or run \`rbee engines install llama.cpp\``);
  }
  return found;
}

/**
 * Measured against rbee's candle engine on the same model, machine and run (bench/candle-engine.ts);
 * the candle adapter cites the same files (rank 2 on the CPU, rank 1 on CUDA). Metal is not measured: llama.cpp's Metal
 * backend is the one known to work there, and unranked types keep the load order (this one first).
 */
const measuredBackends = {
  cpu: {
    speed: {
      rank: 1,
      source: "bench/results/2026-11-27-cpu-vm-candle.md: 2-core VM, Gemma 3 270M Q4_K_M: decode 49.5 tok/s to candle's 24.7, prompt 710 to 200",
    },
  },
  cuda: {
    speed: {
      rank: 2,
      source:
        "bench/results/2026-12-06-gpu-h100-issue11-same-run.md: H100, same run, decode 0.87x candle's graph path on both Gemma 3 270M and an 8B-shaped Q4_K_M; prompts 0.43x (270M) and 1.09x (8B)",
    },
  },
  metal: {},
} as const satisfies AdapterBackends;

/** Where the engine this configuration would start can run: every backend, unless its llama-server is missing. */
function backendsFor(serverPath: string | undefined, useServer: boolean): AdapterBackends {
  if (!useServer) {
    return measuredBackends;
  }
  try {
    findProgram('llama-server', serverPath, 'serverPath', 'RBEE_LLAMA_SERVER');
    return measuredBackends;
  } catch (error) {
    const unavailable = (error as Error).message;
    return Object.fromEntries(Object.entries(measuredBackends).map(([backend, support]) => [backend, {...support, unavailable}]));
  }
}

/** A coordinator starts llama-server only once every shard's engine listens: it connects to them at load. */
async function waitForShards(context: AdapterContext, endpoints: string[], timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  const waiting = new Set(endpoints);
  while (waiting.size > 0) {
    for (const endpoint of [...waiting]) {
      if (await acceptsConnections(endpoint)) {
        waiting.delete(endpoint);
      }
    }
    if (waiting.size === 0) {
      return;
    }
    if (Date.now() > deadline) {
      throw new RbeeError('timeout', `shards not listening after ${Math.round(timeoutMs / 1000)} s: ${[...waiting].join(', ')}`);
    }
    // Shards coming up is progress of the group's load, small but real.
    context.reportLoadProgress((0.05 * (endpoints.length - waiting.size)) / endpoints.length);
    await new Promise(resolve => setTimeout(resolve, 250));
  }
}

export default function llamacpp(options?: LlamaCppOptions): RbeeAdapter {
  const settings = parseAdapterOptions(name, LlamaCppOptionsSchema, options);
  const configuredServer = settings.serverPath ?? process.env.RBEE_LLAMA_SERVER;
  const useServer = settings.engine === 'llama-server' || (settings.engine === 'auto' && configuredServer !== undefined);
  let embedded: EmbeddedLlamaCpp | null = null;
  let server: LlamaServerEngine | null = null;
  let shard: RpcShardEngine | null = null;

  const engine = () => {
    if (shard !== null) {
      throw new RbeeError('invalid_request', 'this worker is a shard of a worker group: send requests to its coordinator (or the hive)');
    }
    const running = server ?? embedded;
    if (running === null) {
      throw new RbeeError('worker_not_ready', 'the llama.cpp engine is not started');
    }
    return running;
  };

  return defineAdapter({
    name,
    type: 'llamacpp',
    engineOption: 'serverPath',
    adapterType: 'llama.cpp',
    description: useServer ? 'llama.cpp through a llama-server subprocess' : 'llama.cpp in process (node-llama-cpp)',
    // Groups: llama-server on the coordinator drives a ggml-rpc-server on each shard's device.
    groups: true,
    backends: () => backendsFor(settings.serverPath, useServer),
    async start(context: AdapterContext) {
      const group = context.group;
      if (group?.role === 'shard') {
        if (group.endpoint === null) {
          throw new RbeeError('invalid_request', `shard ${context.workerId} was given no endpoint to listen on`);
        }
        shard = RpcShardEngine.start(context, findProgram('ggml-rpc-server', settings.rpcServerPath, 'rpcServerPath', 'RBEE_GGML_RPC_SERVER'), group.endpoint);
      } else if (group?.role === 'coordinator') {
        const endpoints = group.shards.map(member => member.endpoint);
        await waitForShards(context, endpoints, settings.shardWaitMs);
        server = LlamaServerEngine.start(
          context,
          findProgram('llama-server', settings.serverPath, 'serverPath', 'RBEE_LLAMA_SERVER'),
          await context.freePort(),
          settings.serverArgs,
          endpoints,
        );
      } else if (useServer) {
        server = LlamaServerEngine.start(
          context,
          findProgram('llama-server', settings.serverPath, 'serverPath', 'RBEE_LLAMA_SERVER'),
          await context.freePort(),
          settings.serverArgs,
        );
      } else {
        embedded = await EmbeddedLlamaCpp.load(context);
      }
    },
    async ready() {
      if (shard !== null) {
        return shard.ready();
      }
      return server === null ? embedded !== null : server.ready();
    },
    infer: request => engine().infer(request),
    countTokens: prompt => engine().countTokens(prompt),
    heartbeat: async () => (shard === null ? engine().heartbeat() : shard.heartbeat()),
    async stop() {
      await shard?.stop();
      await server?.stop();
      await embedded?.close();
    },
  });
}
