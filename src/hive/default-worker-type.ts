/**
 * The worker type a spawn gets when it names none: the fastest engine this hive can run on the
 * device. The order per device comes from the engine benchmark (bench/candle-engine.ts, results in
 * bench/results/*-candle.md), not from preference: change it when the figures change.
 */
import {RbeeError} from '../errors.js';

type Backend = 'cpu' | 'cuda' | 'metal';

/** Fastest first, per device backend. */
export const fastestEngines: Record<Backend, readonly string[]> = {
  cpu: ['llamacpp', 'candle'],
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
