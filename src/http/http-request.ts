/**
 * HTTP requests on the relay's hot path (the hive to a worker, a worker's adapter to its engine),
 * through node:http with kept-alive connections instead of fetch: every token of every answer
 * crosses these, and fetch's WHATWG Request/Response/stream layers cost about twice node:http's
 * time per request on the 2-core machines rbee is tested on (0.52 vs 0.24 ms to the first chunk
 * of a loopback stream), which is time to first token a client waits for at each hop.
 */
import http, {type IncomingMessage} from 'node:http';
import type {Readable} from 'node:stream';
import https from 'node:https';

/** Connections kept between requests: a hop's next request skips the TCP handshake. */
const agents = {
  'http:': new http.Agent({keepAlive: true, scheduling: 'lifo'}),
  'https:': new https.Agent({keepAlive: true, scheduling: 'lifo'}),
};

export type HttpRequestInit = {
  method: 'GET' | 'POST' | 'DELETE';
  headers?: Record<string, string>;
  body?: Buffer | string;
  /** Aborts the request, or the reading of its answer once it has begun. */
  signal?: AbortSignal;
};

/** An answer whose headers have arrived; its body is read as it comes. */
export type HttpAnswer = {
  status: number;
  ok: boolean;
  /** A header's value (the first, for a repeated one). */
  header(name: string): string | undefined;
  /** The body as it arrives: Buffers, in order (a Node stream, so async-iterable and pipeable). */
  body: Readable;
  /** The whole body as UTF-8 text. */
  text(): Promise<string>;
  /** Stops reading and drops the connection (the server sees its client go). */
  cancel(): void;
};

function aborted(signal: AbortSignal): Error {
  return signal.reason instanceof Error ? signal.reason : new Error(`aborted: ${String(signal.reason)}`);
}

/**
 * A kept-alive connection can be closed by its server just as the next request goes out on it:
 * llama-server (cpp-httplib) drops the connection right after each streamed answer, and a server's
 * idle timeout can fire as a request is written. The server never read that request, so it is sent
 * again, on another connection; only a failure on a reused connection before any answer qualifies.
 */
const MAX_SENDS = 3;

function connectionDroppedBeforeAnswer(request: http.ClientRequest, error: Error): boolean {
  const code = (error as NodeJS.ErrnoException).code;
  return request.reusedSocket && (code === 'ECONNRESET' || code === 'EPIPE');
}

export function httpRequest(url: string, init: HttpRequestInit): Promise<HttpAnswer> {
  const target = new URL(url);
  const protocol = target.protocol;
  if (protocol !== 'http:' && protocol !== 'https:') {
    return Promise.reject(new Error(`${url}: only http: and https: URLs`));
  }
  const {signal} = init;
  if (signal?.aborted === true) {
    return Promise.reject(aborted(signal));
  }
  return new Promise((resolve, reject) => {
    const send = (sends: number) => {
      let answered = false;
      const request = (protocol === 'https:' ? https : http).request(
        target,
        {method: init.method, headers: init.headers, agent: agents[protocol]},
        response => {
          answered = true;
          resolve(answerOf(response));
        },
      );
      // Before the answer this fails the request; after it, destroying the request ends its body with the error.
      const onAbort = () => request.destroy(aborted(signal!));
      signal?.addEventListener('abort', onAbort, {once: true});
      request.once('close', () => signal?.removeEventListener('abort', onAbort));
      // `on`, not `once`: a request destroyed after its answer began errs again, and an error nobody hears kills the process.
      request.on('error', error => {
        if (!answered && sends < MAX_SENDS && signal?.aborted !== true && connectionDroppedBeforeAnswer(request, error)) {
          send(sends + 1);
        } else {
          reject(error);
        }
      });
      request.end(init.body);
    };
    send(1);
  });
}

/** A whole body as UTF-8 text; a body cut off throws. */
export async function bodyText(body: Readable): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of body) {
    chunks.push(chunk as Buffer);
  }
  return Buffer.concat(chunks).toString('utf8');
}

function answerOf(response: IncomingMessage): HttpAnswer {
  const status = response.statusCode ?? 0;
  // A body cut off (its connection reset, the request aborted) fails whoever reads it: `for await`
  // and text() throw. This listener only keeps the same error from also going unheard.
  response.on('error', () => undefined);
  return {
    status,
    ok: status >= 200 && status < 300,
    header(name) {
      const value = response.headers[name.toLowerCase()];
      return Array.isArray(value) ? value[0] : value;
    },
    body: response,
    text: () => bodyText(response),
    cancel() {
      response.destroy();
    },
  };
}
