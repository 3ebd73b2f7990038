/**
 * Memory estimates by model file and worker shape. Reading a GGUF's metadata and simulating
 * llama.cpp's allocations takes 0.5-2 s on every spawn (the vocabulary alone is read twice), yet
 * a file's estimate only changes when the file does. The key is the file's identity as the
 * filesystem tells it (device, inode, size, modification and status-change times in ns), so a
 * file written to, replaced or renamed over is estimated afresh.
 */
import type fs from 'node:fs';

/** What changes whenever a file's contents may have: any write, truncation, replacement or rename onto it. */
export function fileIdentity(stats: fs.BigIntStats): string {
  return [stats.dev, stats.ino, stats.size, stats.mtimeNs, stats.ctimeNs].join(':');
}

export class EstimateCache<T> {
  readonly #entries = new Map<string, Promise<T>>();
  readonly #limit: number;

  constructor(limit = 256) {
    this.#limit = limit;
  }

  get size(): number {
    return this.#entries.size;
  }

  /** The estimate for this file identity and shape: the one made before, else `compute`'s (a failure is not kept). */
  get(identity: string, shape: string, compute: () => Promise<T>): Promise<T> {
    const key = `${identity}|${shape}`;
    const known = this.#entries.get(key);
    if (known !== undefined) {
      // Most recently used last, so the oldest goes first when the cache is full.
      this.#entries.delete(key);
      this.#entries.set(key, known);
      return known;
    }
    const made = compute();
    this.#entries.set(key, made);
    made.catch(() => {
      if (this.#entries.get(key) === made) {
        this.#entries.delete(key);
      }
    });
    while (this.#entries.size > this.#limit) {
      this.#entries.delete(this.#entries.keys().next().value!);
    }
    return made;
  }
}
