/**
 * A shard of a tensor-parallel candle group (ranks 1..world-1): it loads only its slice of the
 * GGUF, listens on the endpoint the hive gave it, and runs its coordinator's steps. Kept apart
 * from the model wrapper: a shard serves no requests, it only lives until its group ends.
 */
import {fromNative, isNativeError, loadNativeBinding, NativeEngineError} from './index.js';

export type NativeShardOptions = {
  path: string;
  rank: number;
  world: number;
  /** 127.0.0.1:PORT */
  endpoint: string;
  secret: string;
  contextSize?: number;
  /** "cpu" (default: the ggml path) or "cuda:N" (the graph path on that GPU). */
  device?: string;
  /** Streams the coordinator serves (default 1): a GPU rank's graphs must be its coordinator's. */
  parallel?: number;
  threads?: number;
  timeoutMs?: number;
  waitMs?: number;
  onProgress?: (fraction: number) => void;
};

export type NativeShard = {
  readonly weightBytes: number;
  readonly cacheBytes: number;
  /** The process's resident memory, and its GPU's memory (used, total) when the rank runs on one. */
  memory(): {rss: number; vramUsed: number | null; vramTotal: number | null};
  /** Settles when the group ends: resolves when the coordinator closed it, rejects when it failed. */
  serve(): Promise<void>;
  /** Stops waiting for a coordinator (a shard already serving ends with its process). */
  close(): void;
};

export async function openNativeShard(options: NativeShardOptions): Promise<NativeShard> {
  const binding = await loadNativeBinding();
  const {onProgress, ...rest} = options;
  const opened = await binding.Shard.open(rest, onProgress);
  if (!(opened instanceof binding.Shard)) {
    throw isNativeError(opened) ? fromNative(opened) : new NativeEngineError('internal', 'the shard load returned nothing usable');
  }
  return {
    weightBytes: opened.weightBytes,
    cacheBytes: opened.cacheBytes,
    memory() {
      const memory = opened.memory();
      return {rss: memory.rss, vramUsed: memory.vramUsed ?? null, vramTotal: memory.vramTotal ?? null};
    },
    async serve() {
      const ended = await opened.serve();
      if (ended !== null) {
        throw fromNative(ended);
      }
    },
    close: () => opened.close(),
  };
}

/** Throws a NativeEngineError (invalid_request, naming the tensor and its shape) when the GGUF does not split over `world` ranks. */
export async function checkNativeTensorParallel(path: string, world: number): Promise<void> {
  const binding = await loadNativeBinding();
  const problem = binding.checkTensorParallel(path, world);
  if (problem !== null) {
    throw fromNative(problem);
  }
}
