/** The benchmark's HTTP client: plain fetch (undici), the same client for the hive and the worker. */
import {setTimeout as sleep} from 'node:timers/promises';

export {sleep};

export type JsonAnswer = {status: number; body: any};

async function answer(response: Response): Promise<JsonAnswer> {
  const text = await response.text();
  try {
    return {status: response.status, body: JSON.parse(text)};
  } catch {
    return {status: response.status, body: text};
  }
}

export async function getJson(url: string, timeoutMs = 10_000): Promise<JsonAnswer> {
  return answer(await fetch(url, {signal: AbortSignal.timeout(timeoutMs)}));
}

export async function postJson(url: string, body: unknown, timeoutMs = 60_000): Promise<JsonAnswer> {
  return answer(await fetch(url, {
    method: 'POST',
    headers: {'content-type': 'application/json'},
    body: JSON.stringify(body),
    signal: AbortSignal.timeout(timeoutMs),
  }));
}

export async function deleteJson(url: string, timeoutMs = 60_000): Promise<JsonAnswer> {
  return answer(await fetch(url, {method: 'DELETE', signal: AbortSignal.timeout(timeoutMs)}));
}

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
 * A streaming POST /v1/infer: parses the SSE `data:` lines as they arrive and times the first
 * token event and the final done event (performance.now(), in the client).
 */
export async function streamInfer(url: string, body: Record<string, unknown>, timeoutMs = 180_000): Promise<StreamTiming> {
  const startedAt = performance.now();
  const response = await fetch(url, {
    method: 'POST',
    headers: {'content-type': 'application/json'},
    body: JSON.stringify({...body, stream: true}),
    signal: AbortSignal.timeout(timeoutMs),
  });
  if (!response.ok || response.body === null) {
    throw new Error(`POST ${url} answered ${response.status}: ${await response.text()}`);
  }
  const decoder = new TextDecoder();
  let buffer = '';
  let firstAt: number | null = null;
  let done: {at: number; tokens: number; finish: string} | null = null;
  for await (const chunk of response.body) {
    const now = performance.now();
    buffer += decoder.decode(chunk as Uint8Array, {stream: true});
    let boundary = buffer.indexOf('\n\n');
    while (boundary !== -1) {
      const block = buffer.slice(0, boundary);
      buffer = buffer.slice(boundary + 2);
      boundary = buffer.indexOf('\n\n');
      for (const line of block.split('\n')) {
        if (!line.startsWith('data:')) {
          continue;
        }
        const event = JSON.parse(line.slice(5).trim()) as {type: string; tokens_generated?: number; finish_reason?: string; error?: {code: string; message: string}};
        if (event.type === 'token') {
          firstAt ??= now;
        } else if (event.type === 'done') {
          done = {at: now, tokens: event.tokens_generated ?? 0, finish: event.finish_reason ?? '?'};
        } else if (event.type === 'error') {
          throw new Error(`stream error from ${url}: ${event.error?.code}: ${event.error?.message}`);
        }
      }
    }
  }
  if (done === null || firstAt === null) {
    throw new Error(`stream from ${url} ended without ${firstAt === null ? 'a token' : 'a done'} event`);
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
