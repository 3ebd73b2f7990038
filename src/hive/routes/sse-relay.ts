/**
 * The one relay of a worker's SSE answer to the hive's client, byte for byte, used by the
 * inference and workflow routes alike. Three things it owns so that no route gets one wrong:
 * a client that goes away cancels the worker's stream (the worker stops generating), a stream
 * that breaks or ends without its end marker gets an error event (a cut-off answer never reads
 * as a finished one), and a slow client slows the reading of the worker (nothing piles up in
 * the hive's memory).
 */
import type {ServerResponse} from 'node:http';
import type {Readable} from 'node:stream';
import type {FastifyReply} from 'fastify';
import type {HttpAnswer} from '../../http/http-request.js';
import {writeSse} from '../../http/sse.js';
import {StreamEndWatch} from './stream-end.js';

export type RelayOptions = {
  /** Which end markers count: the OpenAI routes' (`[DONE]`, an error object) or rbee's (`done`, `error` events). */
  openAi: boolean;
  /** Headers beyond the SSE ones. */
  headers?: Record<string, string>;
  /** Sees each chunk as it passes (token counting). */
  onChunk?: (chunk: Uint8Array) => void;
  /** The event sent when the stream broke (`reason`) or ended without its end marker. */
  cutOff: (reason: string) => unknown;
};

export async function relayStream(upstream: HttpAnswer, reply: FastifyReply, options: RelayOptions): Promise<void> {
  const raw = reply.raw;
  reply.hijack();
  // No flushHeaders: the headers leave with the first event, in one write (a worker opens its
  // stream only with its first event anyway), which is a syscall less on the way to the first token.
  raw.writeHead(upstream.status, {
    'content-type': upstream.header('content-type') ?? 'text/event-stream',
    'cache-control': 'no-cache, no-transform',
    connection: 'keep-alive',
    ...options.headers,
  });
  const end = new StreamEndWatch();
  // pass() returns as soon as the client goes, even while it waits on the worker: its stream is cancelled below.
  const broke = await pass(upstream.body, raw, chunk => {
    end.push(chunk);
    options.onChunk?.(chunk);
  });
  if (raw.destroyed) {
    // A break-off by the client is not the worker's failure; the stream is dropped, not reported.
    upstream.cancel();
  } else if (broke !== null || !end.ended(options.openAi)) {
    upstream.cancel(); // a body still open (the relay itself failed) is dropped, the worker stops generating
    writeSse(raw, options.cutOff(broke ?? 'the connection closed'));
  }
  raw.end();
}

/**
 * Writes the body's chunks to the client as they come: each 'readable' event, what the body holds
 * goes out in the same tick (an async iterator would take a promise round per chunk), and no chunk
 * is read while the client's socket is full, so nothing is pulled from the worker that the client
 * has not taken. Resolves with why the body broke off, or null when it ended or the client went.
 */
function pass(body: Readable, raw: ServerResponse, onChunk: (chunk: Buffer) => void): Promise<string | null> {
  return new Promise(resolve => {
    let settled = false;
    const settle = (reason: string | null) => {
      if (!settled) {
        settled = true;
        body.off('readable', pump);
        raw.off('drain', pump);
        raw.off('close', onGone);
        resolve(reason);
      }
    };
    function pump() {
      while (!settled && !raw.writableNeedDrain) {
        if (raw.destroyed) {
          settle(null);
          return;
        }
        const chunk = body.read() as Buffer | null;
        if (chunk === null) {
          return; // more comes with the next 'readable' (or the body's end)
        }
        try {
          onChunk(chunk);
        } catch (error) {
          // Thrown in an event handler it would take the hive down: the stream ends here instead.
          settle(`the relay failed: ${(error as Error).message}`);
          return;
        }
        raw.write(chunk);
      }
    }
    const onGone = () => settle(null);
    raw.on('drain', pump);
    raw.on('close', onGone);
    body.on('readable', pump);
    body.once('end', () => settle(null));
    body.once('error', error => settle(error.message));
    // Destroyed without an error (cancelled) or cut off: a body that closes before its end broke off.
    body.once('close', () => settle(body.readableEnded ? null : 'the connection closed'));
  });
}
