/**
 * One streaming client for two wire formats, so both sides of a comparison are timed by the same
 * code: llama-server's own `POST /completion` (`data: {content, stop, tokens_predicted}` per token)
 * and rbee's `POST /v1/infer` (`data: {type: "token" | "done" | "error"}`). Plain fetch (undici) and
 * the protocol's one SSE reader, so neither side goes through a client the other lacks; the clock is
 * performance.now() in this process, read as each event comes out of the reader.
 */
import {readSse} from '../../src/protocol/sse-reader.js';

export type StreamFormat = 'llama-server' | 'rbee';

export type TimedStream = {
  /** ms from sending the request to the first event carrying text (a token). */
  ttftMs: number;
  /** ms from sending the request to the last event carrying text. */
  lastTokenMs: number;
  /** ms from sending the request to the closing event (llama-server `stop: true`, rbee `done`). */
  endMs: number;
  /** Tokens generated, as the server counts them (tokens_predicted / tokens_generated). */
  tokens: number;
  /** Events that carried text (an incomplete UTF-8 sequence may leave a token without one). */
  tokenEvents: number;
  /** (tokens − 1) / (t_last_token − t_first_token), tokens per second; NaN with fewer than 2 tokens. */
  decodeTokensPerSecond: number;
  finish: string;
  startedAt: number;
};

type LlamaEvent = {content?: string; stop?: boolean; tokens_predicted?: number; stop_type?: string; error?: {message?: string}};
type RbeeEvent = {type: string; text?: string; tokens_generated?: number; finish_reason?: string; error?: {code: string; message: string}};

/** `headers`: what the server demands beyond the body (a worker's key: `Authorization: Bearer …`). */
export async function timedStream(
  url: string,
  body: Record<string, unknown>,
  format: StreamFormat,
  timeoutMs = 180_000,
  headers: Record<string, string> = {},
): Promise<TimedStream> {
  const startedAt = performance.now();
  const response = await fetch(url, {
    method: 'POST',
    headers: {'content-type': 'application/json', ...headers},
    body: JSON.stringify({...body, stream: true}),
    signal: AbortSignal.timeout(timeoutMs),
  });
  if (!response.ok || response.body === null) {
    throw new Error(`POST ${url} answered ${response.status}: ${await response.text()}`);
  }
  // One mutable record, not loose variables: the parser below is a closure.
  const seen: {firstAt: number | null; lastAt: number | null; tokenEvents: number; end: {at: number; tokens: number; finish: string} | null} = {
    firstAt: null,
    lastAt: null,
    tokenEvents: 0,
    end: null,
  };
  const token = (now: number) => {
    seen.firstAt ??= now;
    seen.lastAt = now;
    seen.tokenEvents++;
  };

  const onData = (data: string, now: number) => {
    if (format === 'llama-server') {
      const event = JSON.parse(data) as LlamaEvent;
      if (event.error !== undefined) {
        throw new Error(`stream error from ${url}: ${event.error.message ?? JSON.stringify(event.error)}`);
      }
      if (typeof event.content === 'string' && event.content !== '') {
        token(now);
      }
      if (event.stop === true) {
        seen.end = {at: now, tokens: event.tokens_predicted ?? 0, finish: event.stop_type === 'limit' ? 'length' : (event.stop_type ?? '?')};
      }
      return;
    }
    const event = JSON.parse(data) as RbeeEvent;
    if (event.type === 'token') {
      token(now);
    } else if (event.type === 'done') {
      seen.end = {at: now, tokens: event.tokens_generated ?? 0, finish: event.finish_reason ?? '?'};
    } else if (event.type === 'error') {
      throw new Error(`stream error from ${url}: ${event.error?.code}: ${event.error?.message}`);
    }
  };

  for await (const event of readSse(response.body)) {
    const now = performance.now();
    if (event.extra.error !== undefined) {
      // llama-server's way of failing a stream after its headers went out.
      throw new Error(`stream error from ${url}: ${event.extra.error.trim()}`);
    }
    if (event.data !== '') {
      onData(event.data.trim(), now);
    }
  }
  const {firstAt, lastAt, tokenEvents, end: closed} = seen;
  if (closed === null || firstAt === null || lastAt === null) {
    throw new Error(`stream from ${url} ended without ${firstAt === null ? 'a token' : 'its closing'} event`);
  }
  const decodeSeconds = (lastAt - firstAt) / 1000;
  return {
    ttftMs: firstAt - startedAt,
    lastTokenMs: lastAt - startedAt,
    endMs: closed.at - startedAt,
    tokens: closed.tokens,
    tokenEvents,
    decodeTokensPerSecond: closed.tokens >= 2 && decodeSeconds > 0 ? (closed.tokens - 1) / decodeSeconds : Number.NaN,
    finish: closed.finish,
    startedAt,
  };
}
