/**
 * The one relay of a worker's SSE answer to the hive's client, byte for byte, used by the
 * inference and workflow routes alike. Three things it owns so that no route gets one wrong:
 * a client that goes away cancels the worker's stream (the worker stops generating), a stream
 * that breaks or ends without its end marker gets an error event (a cut-off answer never reads
 * as a finished one), and a slow client slows the reading of the worker (nothing piles up in
 * the hive's memory).
 */
import type {ServerResponse} from 'node:http';
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
  const chunks = upstream.body[Symbol.asyncIterator]();
  // The worker's stream is cancelled when the client goes, even while the relay waits on a read.
  const onClose = () => {
    if (!raw.writableFinished) {
      upstream.cancel();
    }
  };
  raw.on('close', onClose);
  const end = new StreamEndWatch();
  let broke: string | null = null;
  try {
    for (;;) {
      const {done, value} = (await chunks.next()) as IteratorResult<Buffer>;
      if (done === true || raw.destroyed) {
        break;
      }
      end.push(value);
      options.onChunk?.(value);
      if (!raw.write(value)) {
        await drained(raw);
      }
    }
  } catch (error) {
    broke = (error as Error).message;
  } finally {
    raw.off('close', onClose);
  }
  if (raw.destroyed) {
    // A break-off by the client is not the worker's failure; the stream is dropped, not reported.
    upstream.cancel();
  } else if (broke !== null || !end.ended(options.openAi)) {
    writeSse(raw, options.cutOff(broke ?? 'the connection closed'));
  }
  raw.end();
}

/** Resolves once the client took what was written, or is gone. */
function drained(raw: ServerResponse): Promise<void> {
  if (raw.destroyed) {
    return Promise.resolve();
  }
  return new Promise(resolve => {
    const done = () => {
      raw.off('drain', done);
      raw.off('close', done);
      resolve();
    };
    raw.on('drain', done);
    raw.on('close', done);
  });
}
