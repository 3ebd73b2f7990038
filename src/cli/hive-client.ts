/** The CLI's only way to a running hive: its HTTP API. */
import {RbeeError, type ErrorCode} from '../errors.js';
import {parseWire} from '../protocol/parse.js';
import {ErrorBodySchema} from '../protocol/wire.js';

export type HiveClientOptions = {url: string; token: string | undefined; timeoutMs?: number};

export class HiveClient {
  readonly url: string;
  readonly #token: string | undefined;
  readonly #timeoutMs: number;

  constructor(options: HiveClientOptions) {
    this.url = options.url.replace(/\/+$/, '');
    this.#token = options.token;
    this.#timeoutMs = options.timeoutMs ?? 30_000;
  }

  async get<T>(path: string): Promise<T> {
    return this.#json<T>('GET', path, undefined);
  }

  async post<T>(path: string, body: unknown, timeoutMs?: number): Promise<T> {
    return this.#json<T>('POST', path, body, timeoutMs);
  }

  async delete<T>(path: string, timeoutMs?: number): Promise<T> {
    return this.#json<T>('DELETE', path, undefined, timeoutMs);
  }

  /** POSTs a streaming request and calls `onData` with each SSE `data:` payload. */
  async stream(path: string, body: unknown, onData: (data: string) => void, signal?: AbortSignal): Promise<void> {
    await this.#readSse(await this.#fetch('POST', path, body, signal), onData);
  }

  /**
   * Follows a GET event stream (the hive's /v1/events) until it ends or `signal` aborts. With
   * `stallMs`, a stream that stays silent that long — no event and not even the hive's keep-alive —
   * is given up with a `timeout` error: a hung hive keeps its socket open, so nothing else tells.
   */
  async subscribe(path: string, onData: (data: string) => void, signal?: AbortSignal, stallMs?: number): Promise<void> {
    const controller = new AbortController();
    const abort = () => controller.abort(signal?.reason);
    signal?.addEventListener('abort', abort, {once: true});
    let stalled = false;
    let watchdog: NodeJS.Timeout | undefined;
    const heard = () => {
      if (stallMs !== undefined) {
        clearTimeout(watchdog);
        watchdog = setTimeout(() => {
          stalled = true;
          controller.abort();
        }, stallMs);
      }
    };
    try {
      heard();
      await this.#readSse(await this.#fetch('GET', path, undefined, controller.signal), onData, heard);
    } catch (error) {
      if (stalled) {
        throw new RbeeError('timeout', `the hive at ${this.url} sent nothing for ${stallMs! / 1000} s, not even a keep-alive: it is hung, or the network is`, {cause: error});
      }
      throw error;
    } finally {
      clearTimeout(watchdog);
      signal?.removeEventListener('abort', abort);
    }
  }

  async #readSse(response: Response, onData: (data: string) => void, onChunk?: () => void): Promise<void> {
    if (!response.ok || response.body === null) {
      throw await this.#errorFrom(response);
    }
    const decoder = new TextDecoder();
    let buffer = '';
    for await (const chunk of response.body) {
      onChunk?.();
      buffer += decoder.decode(chunk, {stream: true});
      let boundary = buffer.indexOf('\n\n');
      while (boundary !== -1) {
        const event = buffer.slice(0, boundary);
        buffer = buffer.slice(boundary + 2);
        for (const line of event.split('\n')) {
          if (line.startsWith('data: ')) {
            onData(line.slice(6));
          }
        }
        boundary = buffer.indexOf('\n\n');
      }
    }
  }

  async #json<T>(method: string, path: string, body: unknown, timeoutMs?: number): Promise<T> {
    const response = await this.#fetch(method, path, body, AbortSignal.timeout(timeoutMs ?? this.#timeoutMs));
    if (!response.ok) {
      throw await this.#errorFrom(response);
    }
    return (await response.json()) as T;
  }

  async #fetch(method: string, path: string, body: unknown, signal?: AbortSignal): Promise<Response> {
    const headers: Record<string, string> = {};
    if (body !== undefined) {
      headers['content-type'] = 'application/json';
    }
    if (this.#token !== undefined) {
      headers.authorization = `Bearer ${this.#token}`;
    }
    try {
      return await fetch(`${this.url}${path}`, {
        method,
        headers,
        ...(body === undefined ? {} : {body: JSON.stringify(body)}),
        ...(signal === undefined ? {} : {signal}),
      });
    } catch (error) {
      if ((error as Error).name === 'TimeoutError') {
        throw new RbeeError('timeout', `hive at ${this.url} did not answer ${method} ${path} in time`, {cause: error});
      }
      throw new RbeeError('hive_unreachable', `no hive at ${this.url} (start one with \`rbee hive start\`, or pass --hive)`, {cause: error});
    }
  }

  async #errorFrom(response: Response): Promise<RbeeError> {
    const text = await response.text();
    let parsed: unknown = null;
    try {
      parsed = JSON.parse(text);
    } catch {
      // not JSON: reported as text below
    }
    const body = parseWire(ErrorBodySchema, parsed, 'error body');
    if (body.ok) {
      return new RbeeError(body.value.error.code as ErrorCode, body.value.error.message, {status: response.status});
    }
    return new RbeeError('upstream_error', `hive answered ${response.status}: ${text.slice(0, 200)}`, {status: response.status});
  }
}
