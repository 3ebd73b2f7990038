/**
 * rbee's Ollama adapter, written against the public adapter API like any plugin: the worker runs
 * `ollama serve` with a loopback port, a model store and a keep-alive of its own, imports its GGUF
 * with a generated Modelfile, and talks to Ollama's native API (/api/generate, /api/chat, /api/ps,
 * /api/tags). One worker serves several models, each by name in a request's `model`; the hive's
 * `unload_model` frees one (keep_alive 0) while the worker goes on.
 *
 *   rbee engines install ollama          # builds ollama from its Go module, cached
 *   rbee worker spawn --type ollama --model default --adapter-option keepAlive=30m
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import {z} from 'zod';
import {RbeeError, defineAdapter, findExecutable, findOllama, parseAdapterOptions, type AdapterBackends, type AdapterContext, type RbeeAdapter} from 'rbee';
import {OllamaEngine} from './ollama-engine.js';

const name = 'rbee:ollama';
export const installCommand = 'rbee engines install ollama';

/** Ollama's keep-alive: a duration ("5m", "1h30m", "90s"), seconds, or a negative number for "forever". */
const KeepAliveSchema = z.union([z.number().int(), z.string().regex(/^(-?\d+|(\d+(\.\d+)?(ns|us|ms|s|m|h))+)$/, 'a duration like "5m", or seconds')]);

export const OllamaOptionsSchema = z.strictObject({
  /** The ollama program (default: RBEE_OLLAMA, else the cached build, else `ollama` on PATH). */
  command: z.string().min(1).optional(),
  /** An existing Ollama model store to serve from, whose every model becomes addressable (default: a fresh one per worker, removed with it). */
  modelsDir: z.string().min(1).optional(),
  /** How long Ollama keeps an idle model loaded (OLLAMA_KEEP_ALIVE; Ollama's default is 5m). */
  keepAlive: KeepAliveSchema.default('5m'),
  /** More GGUF files to import into the worker's store, by the name requests use for them. */
  models: z
    .record(z.string().regex(/^[A-Za-z0-9][A-Za-z0-9_.:-]{0,79}$/, 'a model name of letters, digits, "_", ".", ":" or "-"'), z.string().min(1))
    .default({}),
  /** Load the worker's model before it reports ready (default: yes). */
  preload: z.boolean().default(true),
});
export type OllamaOptions = z.input<typeof OllamaOptionsSchema>;

/** Which ollama program runs, and where it came from (for error messages). */
export function ollamaProgram(command: string | undefined, env: NodeJS.ProcessEnv = process.env): {program: string | undefined; source: string} {
  if (command !== undefined) {
    return {program: findExecutable(command, env), source: `the adapter's \`command\` option (${command})`};
  }
  const fromEnv = env.RBEE_OLLAMA;
  if (fromEnv !== undefined && fromEnv !== '') {
    return {program: findExecutable(fromEnv, env), source: `RBEE_OLLAMA (${fromEnv})`};
  }
  const cached = findOllama(env);
  if (cached !== null) {
    return {program: cached.binary, source: `the cached build (${cached.binary})`};
  }
  return {program: findExecutable('ollama', env), source: '`ollama` on PATH'};
}

/** Ollama's own model store, as `ollama serve` finds it: OLLAMA_MODELS, else ~/.ollama/models. */
export function ollamaStore(env: NodeJS.ProcessEnv = process.env): string {
  const dir = env.OLLAMA_MODELS !== undefined && env.OLLAMA_MODELS !== '' ? env.OLLAMA_MODELS : path.join(os.homedir(), '.ollama', 'models');
  if (!fs.existsSync(dir)) {
    throw new RbeeError(
      'model_not_found',
      `no Ollama model store at ${dir}: give one with --adapter-option modelsDir=<folder> (the OLLAMA_MODELS of an Ollama)`,
    );
  }
  return dir;
}

/** The one-line error for an ollama that cannot run, with the exact command that installs one. */
export function missingOllama(source: string): string {
  return `no ollama program at ${source}: run \`${installCommand}\` (or set RBEE_OLLAMA or the adapter's \`command\` option)`;
}

/**
 * Ollama's CPU runner is always there. CUDA needs Ollama's GPU runner libraries beside the binary
 * (lib/ollama/cuda_*, as Ollama's release archives ship them); the build rbee makes from the Go
 * module has none, so it says so rather than claim a GPU it cannot use. Metal is built into macOS
 * releases. No speed rank: nothing measured puts it before the other engines.
 */
function backendsOf(command: string | undefined): AdapterBackends {
  const {program, source} = ollamaProgram(command);
  if (program === undefined) {
    const unavailable = missingOllama(source);
    return {cpu: {unavailable}, cuda: {unavailable}, ...(process.platform === 'darwin' ? {metal: {unavailable}} : {})};
  }
  const libDir = path.join(path.dirname(fs.realpathSync(program)), '..', 'lib', 'ollama');
  const hasCuda = fs.existsSync(libDir) && fs.readdirSync(libDir).some(entry => entry.startsWith('cuda'));
  return {
    cpu: {},
    cuda: hasCuda
      ? {}
      : {
          unavailable: `${program} has no CUDA runner (no lib/ollama/cuda_* beside it; rbee's own build is CPU-only): point RBEE_OLLAMA or the adapter's \`command\` at an Ollama release that has one`,
        },
    ...(process.platform === 'darwin' ? {metal: {}} : {}),
  };
}

export default function ollama(options?: OllamaOptions): RbeeAdapter {
  const settings = parseAdapterOptions(name, OllamaOptionsSchema, options);
  let engine: OllamaEngine | null = null;

  const running = () => {
    if (engine === null) {
      throw new RbeeError('worker_not_ready', 'the ollama engine is not started');
    }
    return engine;
  };

  return defineAdapter({
    name,
    type: 'ollama',
    adapterType: 'ollama',
    modelFormat: 'gguf',
    engineOption: 'command',
    engineModels: true,
    backends: () => backendsOf(settings.command),
    description: 'Ollama through an `ollama serve` subprocess (several models per worker, loaded and unloaded on demand)',
    async start(context: AdapterContext) {
      const {program, source} = ollamaProgram(settings.command);
      if (program === undefined) {
        throw new RbeeError('engine_error', missingOllama(source));
      }
      engine = await OllamaEngine.start(context, {
        binary: program,
        // `engine:<name>` serves from an existing store: the `modelsDir` option, else Ollama's own.
        modelsDir: settings.modelsDir ?? (context.modelPath === '' ? ollamaStore() : undefined),
        keepAlive: String(settings.keepAlive),
        models: settings.models,
        preload: settings.preload,
      });
    },
    ready: async () => running().ready(),
    infer: request => running().infer(request),
    heartbeat: async () => running().heartbeat(),
    unloadModel: async model => running().unload(model),
    async stop() {
      await engine?.stop();
    },
  });
}
