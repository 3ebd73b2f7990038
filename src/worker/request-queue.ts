import {RbeeError} from '../errors.js';

/**
 * Admits at most `capacity` requests to the engine at once and keeps up to `maxWaiting` more in
 * FIFO order; past that a request is refused at once (503), so a flood never grows memory or
 * latency without bound. A waiter whose client went away leaves the queue.
 */
export class RequestQueue {
  readonly capacity: number;
  readonly maxWaiting: number;
  #running = 0;
  #draining = false;
  readonly #waiting: Array<{resolve: () => void; reject: (error: Error) => void}> = [];

  constructor(options: {capacity: number; maxWaiting: number}) {
    this.capacity = options.capacity;
    this.maxWaiting = options.maxWaiting;
  }

  get running(): number {
    return this.#running;
  }

  get depth(): number {
    return this.#waiting.length;
  }

  /** Stops admitting new requests; those already admitted or waiting still run. */
  drain(): void {
    this.#draining = true;
  }

  get draining(): boolean {
    return this.#draining;
  }

  async run<T>(work: () => Promise<T>, signal?: AbortSignal): Promise<T> {
    await this.#acquire(signal);
    try {
      return await work();
    } finally {
      this.#release();
    }
  }

  /** Resolves once nothing runs or waits (used for a graceful stop). */
  async idle(pollMs = 50): Promise<void> {
    while (this.#running > 0 || this.#waiting.length > 0) {
      await new Promise(resolve => setTimeout(resolve, pollMs));
    }
  }

  async #acquire(signal?: AbortSignal): Promise<void> {
    if (this.#draining) {
      throw new RbeeError('worker_not_ready', 'worker is draining: it takes no new requests');
    }
    if (this.#running < this.capacity) {
      this.#running++;
      return;
    }
    if (this.#waiting.length >= this.maxWaiting) {
      throw new RbeeError('model_unavailable', `worker queue is full (${this.capacity} running, ${this.maxWaiting} waiting)`);
    }
    await new Promise<void>((resolve, reject) => {
      const entry = {resolve, reject};
      this.#waiting.push(entry);
      signal?.addEventListener(
        'abort',
        () => {
          const index = this.#waiting.indexOf(entry);
          if (index !== -1) {
            this.#waiting.splice(index, 1);
            reject(new RbeeError('invalid_request', 'client went away while the request was queued'));
          }
        },
        {once: true},
      );
    });
  }

  #release(): void {
    const next = this.#waiting.shift();
    if (next === undefined) {
      this.#running--;
    } else {
      next.resolve();
    }
  }
}
