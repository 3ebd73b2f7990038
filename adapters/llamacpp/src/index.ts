/**
 * rbee's llama.cpp adapter, written against the public adapter API like any plugin. Two engines:
 * node-llama-cpp in the worker process (the default), or a real llama-server subprocess when a
 * binary is configured (`serverPath`, RBEE_LLAMA_SERVER) or `engine: 'llama-server'` is asked for.
 */
import fs from 'node:fs';
import path from 'node:path';
import {z} from 'zod';
import {RbeeError, defineAdapter, findLlamaCpp, parseAdapterOptions, type AdapterContext, type RbeeAdapter} from 'rbee';
import {EmbeddedLlamaCpp} from './embedded-engine.js';
import {LlamaServerEngine} from './llama-server-engine.js';

const name = 'rbee:llamacpp';

export const LlamaCppOptionsSchema = z.strictObject({
  engine: z.enum(['auto', 'embedded', 'llama-server']).default('auto'),
  /** A llama-server binary; with `engine: 'auto'` its presence selects llama-server. */
  serverPath: z.string().min(1).optional(),
  /** Extra llama-server arguments, appended as given (an array: no shell involved). */
  serverArgs: z.array(z.string()).default([]),
});
export type LlamaCppOptions = z.input<typeof LlamaCppOptionsSchema>;

function onPath(program: string): string | undefined {
  for (const dir of (process.env.PATH ?? '').split(path.delimiter)) {
    const candidate = path.join(dir, program);
    try {
      fs.accessSync(candidate, fs.constants.X_OK);
      return candidate;
    } catch {
      // not here
    }
  }
  return undefined;
}

function findServer(configured: string | undefined): string {
  const found = configured ?? process.env.RBEE_LLAMA_SERVER ?? onPath('llama-server') ?? findLlamaCpp()?.programs['llama-server'];
  if (found === undefined) {
    throw new RbeeError('engine_error', 'no llama-server found: set serverPath, RBEE_LLAMA_SERVER, put it on PATH, or run `rbee engines install llama.cpp`');
  }
  return found;
}

export default function llamacpp(options?: LlamaCppOptions): RbeeAdapter {
  const settings = parseAdapterOptions(name, LlamaCppOptionsSchema, options);
  const configuredServer = settings.serverPath ?? process.env.RBEE_LLAMA_SERVER;
  const useServer = settings.engine === 'llama-server' || (settings.engine === 'auto' && configuredServer !== undefined);
  let embedded: EmbeddedLlamaCpp | null = null;
  let server: LlamaServerEngine | null = null;

  const engine = () => {
    const running = server ?? embedded;
    if (running === null) {
      throw new RbeeError('worker_not_ready', 'the llama.cpp engine is not started');
    }
    return running;
  };

  return defineAdapter({
    name,
    type: 'llamacpp',
    adapterType: 'llama.cpp',
    description: useServer ? 'llama.cpp through a llama-server subprocess' : 'llama.cpp in process (node-llama-cpp)',
    async start(context: AdapterContext) {
      if (useServer) {
        server = LlamaServerEngine.start(context, findServer(settings.serverPath), await context.freePort(), settings.serverArgs);
      } else {
        embedded = await EmbeddedLlamaCpp.load(context);
      }
    },
    async ready() {
      return server === null ? embedded !== null : server.ready();
    },
    infer: request => engine().infer(request),
    heartbeat: async () => engine().heartbeat(),
    async stop() {
      await server?.stop();
      await embedded?.close();
    },
  });
}
