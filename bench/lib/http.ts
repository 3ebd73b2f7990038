/**
 * The benchmarks' side of the hive's API: the timing of a streamed /v1/infer, read through the
 * protocol's HiveClient (the client the CLI and the dashboard use, on the hive or on a worker's
 * own port alike), and polling.
 */
import {setTimeout as sleep} from 'node:timers/promises';
import type {HiveClient} from '../../src/protocol/hive-client.js';
import type {InferRequest} from '../../src/protocol/wire.js';

export {sleep};

export type StreamTiming = {
  /** ms from sending the request to the first `token` event. */
  ttftMs: number;
  /** ms from sending the request to the `done` event. */
  totalMs: number;
  tokensGenerated: number;
  /** (tokens_generated - 1) / (t_done - t_first), in tokens per second; NaN with fewer than 2 tokens. */
  decodeTokensPerSecond: number;
  finishReason: string;
  startedAt: number;
  doneAt: number;
};

/**
 * A streamed /v1/infer: times the first `token` event and the final `done` event
 * (performance.now(), in this process, as each event arrives).
 */
export async function streamInfer(client: HiveClient, request: Omit<InferRequest, 'stream'>, timeoutMs = 180_000): Promise<StreamTiming> {
  const startedAt = performance.now();
  let firstAt: number | null = null;
  let done: {at: number; tokens: number; finish: string} | null = null;
  for await (const event of client.inferStream(request, {signal: AbortSignal.timeout(timeoutMs)})) {
    const now = performance.now();
    if (event.type === 'token') {
      firstAt ??= now;
    } else if (event.type === 'done') {
      done = {at: now, tokens: event.tokens_generated, finish: event.finish_reason};
    } else {
      throw new Error(`stream error from ${client.url}: ${event.error.code}: ${event.error.message}`);
    }
  }
  if (done === null || firstAt === null) {
    throw new Error(`stream from ${client.url} ended without ${firstAt === null ? 'a token' : 'a done'} event`);
  }
  const decodeSeconds = (done.at - firstAt) / 1000;
  return {
    ttftMs: firstAt - startedAt,
    totalMs: done.at - startedAt,
    tokensGenerated: done.tokens,
    decodeTokensPerSecond: done.tokens >= 2 && decodeSeconds > 0 ? (done.tokens - 1) / decodeSeconds : Number.NaN,
    finishReason: done.finish,
    startedAt,
    doneAt: done.at,
  };
}

/** Polls until `check` returns a value (not undefined) or the timeout passes. */
export async function pollUntil<T>(what: string, check: () => Promise<T | undefined>, timeoutMs: number, intervalMs = 20): Promise<T> {
  const deadline = performance.now() + timeoutMs;
  for (;;) {
    const value = await check();
    if (value !== undefined) {
      return value;
    }
    if (performance.now() > deadline) {
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    }
    await sleep(intervalMs);
  }
}
