/** The counters a worker reports in its heartbeat; real numbers, updated as requests finish. */
export class WorkerStats {
  readonly startedAt = Date.now();
  requestsTotal = 0;
  tokensGenerated = 0;
  lastRequestAt: Date | null = null;
  #windowStart = Date.now();
  #windowTokens = 0;
  #throughput = 0;

  recordRequest(tokens: number): void {
    this.requestsTotal++;
    this.tokensGenerated += tokens;
    this.#windowTokens += tokens;
    this.lastRequestAt = new Date();
  }

  uptimeSeconds(): number {
    return Math.round((Date.now() - this.startedAt) / 100) / 10;
  }

  /** Tokens per second over the time since the previous call (one heartbeat interval). */
  takeThroughput(): number {
    const now = Date.now();
    const seconds = (now - this.#windowStart) / 1000;
    if (seconds > 0) {
      this.#throughput = Math.round((this.#windowTokens / seconds) * 10) / 10;
    }
    this.#windowStart = now;
    this.#windowTokens = 0;
    return this.#throughput;
  }
}
