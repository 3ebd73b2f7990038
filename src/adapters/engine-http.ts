/**
 * Small HTTP helpers for adapters whose engine is a server (llama-server, vLLM, TensorRT-LLM,
 * ...): JSON calls with a timeout, Server-Sent Events, OpenAI-compatible streaming, and Prometheus
 * text. Exported for plugins. Each takes the engine's `apiKey` (an adapter's `context.engineKey`),
 * sent as `Authorization: Bearer`: an engine on loopback is still reachable by every local user.
 */
import {RbeeError} from '../errors.js';
import type {GenerateResult} from '../worker/engine.js';
import type {AdapterInferRequest} from './adapter-api.js';
import type {Readable} from 'node:stream';
import {SseParser, type SseEvent} from '../protocol/sse-reader.js';
import {httpRequest} from '../http/http-request.js';

/** The `Authorization` header for an engine started with `apiKey` (none without one). */
export function engineAuthorization(apiKey: string | undefined): Record<string, string> {
  return apiKey === undefined || apiKey === '' ? {} : {authorization: `Bearer ${apiKey}`};
}

export async function engineJson<T>(
  url: string,
  options: {method?: string; body?: unknown; timeoutMs?: number; signal?: AbortSignal; apiKey?: string} = {},
): Promise<T> {
  const signals = [AbortSignal.timeout(options.timeoutMs ?? 10_000), ...(options.signal === undefined ? [] : [options.signal])];
  const response = await fetch(url, {
    method: options.method ?? (options.body === undefined ? 'GET' : 'POST'),
    headers: {...engineAuthorization(options.apiKey), ...(options.body === undefined ? {} : {'content-type': 'application/json'})},
    ...(options.body === undefined ? {} : {body: JSON.stringify(options.body)}),
    signal: AbortSignal.any(signals),
  });
  const text = await response.text();
  if (!response.ok) {
    throw new RbeeError('upstream_error', `${url} answered ${response.status}: ${text.slice(0, 300)}`);
  }
  return JSON.parse(text) as T;
}

/**
 * POSTs and calls `onData` with each SSE event's data (sse-reader.ts) until the stream ends or `signal` aborts.
 * With `isEnd`, a stream that closes before a payload for which it is true is an engine failure
 * (`engine_error`): an engine that crashed or dropped the connection must not read as one that finished.
 */
export async function engineSse(
  url: string,
  body: unknown,
  options: {signal: AbortSignal; onData: (data: string) => void; isEnd?: (data: string) => boolean; apiKey?: string},
): Promise<void> {
  const response = await httpRequest(url, {
    method: 'POST',
    headers: {'content-type': 'application/json', accept: 'text/event-stream', ...engineAuthorization(options.apiKey)},
    body: JSON.stringify(body),
    signal: options.signal,
  });
  if (!response.ok) {
    throw new RbeeError('upstream_error', `${url} answered ${response.status}: ${(await response.text()).slice(0, 300)}`);
  }
  let ended = false;
  try {
    await readEvents(response.body, event => {
      if (event.extra.error !== undefined) {
        // llama-server fails a stream whose headers already went out with an `error:` field.
        throw new RbeeError('engine_error', `${url}: the engine failed the stream: ${event.extra.error}`);
      }
      ended ||= options.isEnd?.(event.data) === true;
      options.onData(event.data);
    });
  } catch (error) {
    if (options.signal.aborted) {
      return; // the client went away: what was generated so far stands
    }
    if (error instanceof RbeeError) {
      throw error;
    }
    throw new RbeeError('engine_error', `${url}: the engine's stream broke off: ${(error as Error).message}`, {cause: error});
  }
  if (options.isEnd !== undefined && !ended && !options.signal.aborted) {
    throw new RbeeError(
      'engine_error',
      `${url}: the engine closed its stream before the end marker (it crashed or dropped the connection); the answer is incomplete`,
    );
  }
}

/**
 * Calls `onEvent` with each SSE event of `body` as its chunk arrives: synchronously in the chunk's
 * own tick, no promise per chunk (an engine's token is on its way to the client sooner, and a
 * relayed stream costs less CPU per token). Resolves at the body's end; rejects when the body
 * breaks off or `onEvent` throws, and then drops the body (the engine sees its client go).
 */
function readEvents(body: Readable, onEvent: (event: SseEvent) => void): Promise<void> {
  return new Promise((resolve, reject) => {
    const parser = new SseParser();
    let settled = false;
    const settle = (error: Error | null) => {
      if (settled) {
        return;
      }
      settled = true;
      body.off('data', onChunk);
      if (error === null) {
        resolve();
      } else {
        body.destroy();
        reject(error);
      }
    };
    const take = (events: SseEvent[]) => {
      for (const event of events) {
        if (!settled) {
          onEvent(event);
        }
      }
    };
    const onChunk = (chunk: Buffer) => {
      try {
        take(parser.push(chunk));
      } catch (error) {
        settle(error as Error);
      }
    };
    body.on('data', onChunk);
    body.once('end', () => {
      try {
        take(parser.end());
        settle(null);
      } catch (error) {
        settle(error as Error);
      }
    });
    body.once('error', error => settle(error));
    // Destroyed without an error (the request aborted) or cut off: a body that closes before its end broke off.
    body.once('close', () => settle(body.readableEnded ? null : new Error('the connection closed')));
  });
}

/** The end of an OpenAI-compatible stream: `[DONE]`, or a chunk that gives a finish reason. */
export function isOpenAiStreamEnd(data: string): boolean {
  return data === '[DONE]' || /"finish_reason"\s*:\s*"/.test(data);
}

/** Prometheus text exposition: each sample's value by metric name (labels dropped, values summed). */
export function parsePrometheusText(text: string): Map<string, number> {
  const samples = new Map<string, number>();
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) {
      continue;
    }
    const match = /^([A-Za-z_:][\w:]*)(\{[^}]*\})?\s+(\S+)/.exec(line);
    if (match === null) {
      continue;
    }
    const value = Number(match[3]);
    if (Number.isFinite(value)) {
      samples.set(match[1]!, (samples.get(match[1]!) ?? 0) + value);
    }
  }
  return samples;
}

/** Resident memory of a process in bytes (Linux /proc), or undefined where it cannot be read. */
export async function processRss(pid: number): Promise<number | undefined> {
  try {
    const {readFile} = await import('node:fs/promises');
    const status = await readFile(`/proc/${pid}/status`, 'utf8');
    const match = /^VmRSS:\s+(\d+) kB$/m.exec(status);
    return match === null ? undefined : Number(match[1]) * 1024;
  } catch {
    return undefined;
  }
}

type OpenAiChunk = {
  choices?: Array<{text?: string | null; delta?: {content?: string | null}; finish_reason?: string | null}>;
  usage?: {prompt_tokens?: number; completion_tokens?: number} | null;
  error?: {message?: string} | string;
};

/**
 * One generation through an OpenAI-compatible server (vLLM, TensorRT-LLM, llama-server, ...):
 * `complete` goes to /v1/completions and `chat` to /v1/chat/completions, streamed, with the
 * sampling translated and each text delta passed to `request.onText`. `baseUrl` is the server's
 * origin; `model` the name it serves the model as; `extraBody` is merged into the request body;
 * `apiKey` the key the server was started with.
 */
export async function openAiStream(
  baseUrl: string,
  request: AdapterInferRequest,
  options: {model: string; extraBody?: Record<string, unknown>; apiKey?: string},
): Promise<GenerateResult> {
  const chat = request.kind === 'chat';
  const body = {
    model: options.model,
    ...(chat ? {messages: request.messages} : {prompt: request.prompt}),
    max_tokens: request.maxTokens,
    temperature: request.temperature,
    ...(request.topK === undefined ? {} : {top_k: request.topK}),
    ...(request.topP === undefined ? {} : {top_p: request.topP}),
    ...(request.seed === undefined ? {} : {seed: request.seed}),
    ...(request.stop.length === 0 ? {} : {stop: request.stop}),
    ...options.extraBody,
    stream: true,
    stream_options: {include_usage: true},
  };
  let text = '';
  let pieces = 0;
  let finish: string | null = null;
  let usage: OpenAiChunk['usage'] = null;
  await engineSse(`${baseUrl}/v1/${chat ? 'chat/completions' : 'completions'}`, body, {
    signal: request.signal,
    ...(options.apiKey === undefined ? {} : {apiKey: options.apiKey}),
    isEnd: isOpenAiStreamEnd,
    onData: data => {
      if (data === '[DONE]') {
        return;
      }
      const chunk = JSON.parse(data) as OpenAiChunk;
      if (chunk.error !== undefined) {
        const message = typeof chunk.error === 'string' ? chunk.error : (chunk.error.message ?? JSON.stringify(chunk.error));
        throw new RbeeError('upstream_error', `${baseUrl} failed mid-stream: ${message}`);
      }
      const choice = chunk.choices?.[0];
      const piece = chat ? choice?.delta?.content : choice?.text;
      if (typeof piece === 'string' && piece !== '') {
        text += piece;
        pieces++;
        request.onText(piece);
      }
      finish = choice?.finish_reason ?? finish;
      usage = chunk.usage ?? usage;
    },
  });
  const finishReason = request.signal.aborted ? 'cancelled' : finish === 'length' ? 'length' : 'stop';
  const counts = usage as OpenAiChunk['usage'];
  return {text, tokensGenerated: counts?.completion_tokens ?? pieces, promptTokens: counts?.prompt_tokens ?? 0, finishReason};
}
