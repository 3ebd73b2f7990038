/** The flags `worker spawn` and `worker spawn-group` share, with their RBEE_* twins, and what they become on the wire. */
import path from 'node:path';
import {Option} from 'commander';
import {durationFlagIn, integerFlagIn} from '../parse-flags.js';
import {limits} from '../../config/limits.js';

export type SpawnShape = {model: string; contextSize?: number; threads?: number; parallel?: number};

export function modelOption(): Option {
  return new Option('--model <model>', 'a GGUF path, hf:org/repo:file.gguf, or "default" (the base Gemma 3 270M: it completes text, it does not chat)')
    .env('RBEE_MODEL')
    .makeOptionMandatory();
}

export function shapeOptions(threadsWhat: string): Option[] {
  return [
    new Option('--context-size <tokens>', 'context per parallel request')
      .env('RBEE_CONTEXT_SIZE')
      .argParser(integerFlagIn('--context-size', limits.contextSize)),
    new Option('--threads <n>', threadsWhat).env('RBEE_THREADS').argParser(integerFlagIn('--threads', limits.threads)),
    new Option('--parallel <n>', 'requests generated at once').argParser(integerFlagIn('--parallel', limits.parallel)),
  ];
}

export function timeoutOption(): Option {
  return new Option('--timeout <seconds>', 'with --wait: give up after this long')
    .env('RBEE_TIMEOUT')
    .argParser(integerFlagIn('--timeout', limits.waitSeconds))
    .default(600);
}

/** The model as the hive must see it: the hive runs elsewhere (another working directory), so a path goes absolute. */
export function modelReference(model: string): string {
  return model === 'default' || model.startsWith('hf:') || model.startsWith('engine:') ? model : path.resolve(model);
}

export function shapeFields(options: SpawnShape): {context_size?: number; threads?: number; parallel?: number} {
  return {
    ...(options.contextSize === undefined ? {} : {context_size: options.contextSize}),
    ...(options.threads === undefined ? {} : {threads: options.threads}),
    ...(options.parallel === undefined ? {} : {parallel: options.parallel}),
  };
}

export type SpawnLifetime = {idleTimeout?: number; name?: string};

/** How long a spawned worker (or group) may sit idle, and one more name requests may use for its model. */
export function lifetimeOptions(what: string): Option[] {
  return [
    new Option('--idle-timeout <duration>', `stop the ${what} after this long without a request through the hive (30s, 10m, 1h)`).argParser(
      durationFlagIn('--idle-timeout', limits.idleTimeoutMs),
    ),
    new Option('--name <name>', `one more name requests may use for the ${what}'s model (the \`model\` field)`),
  ];
}

export function lifetimeFields(options: SpawnLifetime): {idle_timeout_ms?: number; name?: string} {
  return {
    ...(options.idleTimeout === undefined ? {} : {idle_timeout_ms: options.idleTimeout}),
    ...(options.name === undefined ? {} : {name: options.name}),
  };
}
