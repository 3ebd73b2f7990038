/**
 * The worker type a spawn gets when it names none: the fastest engine this hive can run on the
 * device. The order per device comes from the engine benchmark (bench/candle-engine.ts, results in
 * bench/results/*-candle.md), not from preference: change it when the figures change.
 */
import {RbeeError} from '../errors.js';

type Backend = 'cpu' | 'cuda' | 'metal';

/** Fastest first, per device backend. */
export const fastestEngines: Record<Backend, readonly string[]> = {
  // 2-core VM, Gemma 3 270M Q4_K_M (2026-11-27-cpu-vm-candle.md): candle decodes at 0.49x, prompts at 0.29x llama.cpp.
  cpu: ['llamacpp', 'candle'],
  // H100 (2026-11-27-gpu-h100-*-candle.md): candle prompts faster (1.10x Gemma 270M, 1.25x an 8B), but decodes
  // at 0.18x and 0.49x llama.cpp; decode is what a served request mostly waits for.
  cuda: ['llamacpp', 'candle'],
  // Not measured: llama.cpp's Metal backend is the one known to work.
  metal: ['llamacpp', 'candle'],
};

export function backendOf(device: string): Backend {
  return device.startsWith('cuda:') ? 'cuda' : device === 'metal' ? 'metal' : 'cpu';
}

export type EngineAvailability = {
  /** Worker types the loaded adapters offer. */
  types: readonly string[];
  /** Backends the built candle engine supports (none when it is not built). */
  candleBackends: readonly string[];
};

export function defaultWorkerType(device: string, available: EngineAvailability): string {
  const backend = backendOf(device);
  const runnable = (type: string) => available.types.includes(type) && (type !== 'candle' || available.candleBackends.includes(backend));
  const chosen = fastestEngines[backend].find(runnable);
  if (chosen === undefined) {
    throw new RbeeError('invalid_request', `no worker type can run on ${device} here: name one with --type (available: ${available.types.join(', ')})`);
  }
  return chosen;
}
