/**
 * Tokens the hive relayed from each worker, counted as answers pass through it, so a listing shows
 * them the moment a request ends where the worker's own figures wait for its next heartbeat. The
 * requests routed are the worker table's count; tokens live here because only the relay sees them.
 */
export class RelayedTokens {
  readonly #byWorker = new Map<string, number>();
  readonly #known: (workerId: string) => boolean;

  /** `known` says whether the hive still has a worker: the tally forgets the others. */
  constructor(known: (workerId: string) => boolean) {
    this.#known = known;
  }

  add(workerId: string, tokens: number): void {
    if (tokens <= 0) {
      return;
    }
    const before = this.#byWorker.get(workerId);
    if (before === undefined) {
      // Pruned only when a worker is first counted: the tally never outgrows the workers seen.
      for (const id of this.#byWorker.keys()) {
        if (!this.#known(id)) {
          this.#byWorker.delete(id);
        }
      }
    }
    this.#byWorker.set(workerId, (before ?? 0) + tokens);
  }

  of(workerId: string): number {
    return this.#byWorker.get(workerId) ?? 0;
  }
}
