/**
 * The worker's end of its hive's link (src/http/link-frames.ts): a Unix socket in the hive's
 * private home on which the hive's generation requests arrive without HTTP. Each request on it
 * costs the worker no request parsing, routing or response head, and the hive no request object:
 * about a millisecond of every answer's first token on the machines rbee is tested on. The worker's
 * HTTP port serves the same requests, and everything else; the link is only the hive's fast path.
 *
 * The socket's folder is the hive's home (0700), the socket itself 0600, and a connection must
 * still open with the worker's key before its first request: a connection that does not is
 * answered 401 and closed, one that sends nothing is closed after a few seconds.
 */
import fs from 'node:fs';
import net from 'node:net';
import {RbeeError} from '../errors.js';
import {errorReply} from '../http/error-handling.js';
import {decodeRequest, encodeFrame, encodeHead, FrameReader, FrameType, type Frame} from '../http/link-frames.js';
import {sameSecret} from '../http/secrets.js';
import {isInferencePath, type Answer, type InferencePath} from './inference-handlers.js';

type Handle = (path: InferencePath, body: unknown, answer: Answer) => Promise<void>;

/** How long a new connection may take to send its key. */
const helloTimeoutMs = 5_000;

export type WorkerLink = {close(): Promise<void>};

const jsonHeaders = {'content-type': 'application/json; charset=utf-8'};
const sseHeaders = {'content-type': 'text/event-stream; charset=utf-8'};

/** A whole JSON answer in one write: head, body, end. */
function wholeAnswer(socket: net.Socket, status: number, body: unknown, headers: Record<string, string> = {}): void {
  if (socket.destroyed) {
    return;
  }
  socket.write(
    Buffer.concat([encodeHead({status, headers: {...jsonHeaders, ...headers}}), encodeFrame(FrameType.data, JSON.stringify(body)), encodeFrame(FrameType.end)]),
  );
}

/** Parses a request body as the HTTP routes' JSON parser would, with its error on bad JSON. */
function parseBody(body: Buffer): unknown {
  try {
    return JSON.parse(body.toString('utf8')) as unknown;
  } catch (error) {
    throw new RbeeError('invalid_json', `request body is not valid JSON: ${(error as Error).message}`, {cause: error, status: 400});
  }
}

/**
 * One request on one connection. The answer's frames go out as the handler writes; a connection
 * closed before its END is the caller gone (the generation stops).
 */
async function serveRequest(socket: net.Socket, path: string, bodyBytes: Buffer, handle: Handle): Promise<void> {
  const gone = new AbortController();
  let finished = false;
  const onClose = () => {
    if (!finished) {
      gone.abort(new Error('the hive closed the link connection'));
    }
  };
  socket.once('close', onClose);
  let streaming = false;
  let answered = false;
  const answer: Answer = {
    signal: gone.signal,
    get streaming() {
      return streaming;
    },
    json(body) {
      answered = true;
      wholeAnswer(socket, 200, body);
    },
    event(data) {
      const text = `data: ${typeof data === 'string' ? data : JSON.stringify(data)}\n\n`;
      if (!streaming) {
        streaming = true;
        answered = true;
        // The head leaves with the first event, in one write: a wake-up of the hive less before the first token.
        if (!socket.destroyed) {
          socket.write(Buffer.concat([encodeHead({status: 200, headers: sseHeaders}), encodeFrame(FrameType.data, text)]));
        }
      } else if (!socket.destroyed) {
        socket.write(encodeFrame(FrameType.data, text));
      }
    },
    end() {
      if (!socket.destroyed) {
        socket.write(encodeFrame(FrameType.end));
      }
    },
  };
  try {
    if (!isInferencePath(path)) {
      throw new RbeeError('not_found', `no route POST ${path} on the worker link`);
    }
    await handle(path, parseBody(bodyBytes), answer);
  } catch (error) {
    if (!answered) {
      const reply = errorReply(error, path);
      wholeAnswer(socket, reply.status, reply.body, reply.headers);
    }
  } finally {
    finished = true;
    socket.off('close', onClose);
  }
}

function serveConnection(socket: net.Socket, key: string, handle: Handle, log: (message: string) => void): void {
  const reader = new FrameReader();
  let authorized = false;
  let busy = false;
  // A connection that does not send its key soon is closed: only the hive's stay open.
  const helloTimer = setTimeout(() => socket.destroy(), helloTimeoutMs);
  helloTimer.unref();
  let refused = false;
  /** Answers 401 (to the request the hive sends with its key) and closes: nothing more is read. */
  const refuse = () => {
    refused = true;
    clearTimeout(helloTimer);
    const error = new RbeeError('unauthorized', 'this worker link answers only its hive: open the connection with the worker key');
    wholeAnswer(socket, 401, error.toJSON());
    socket.end();
  };
  const onFrame = (frame: Frame) => {
    if (refused) {
      return;
    }
    if (frame.type === FrameType.hello && !authorized) {
      clearTimeout(helloTimer);
      if (sameSecret(frame.payload.toString('utf8'), key)) {
        authorized = true;
      } else {
        refuse();
      }
      return;
    }
    // A request before the last one was answered, or a frame only a worker sends: not a hive's connection.
    if (frame.type !== FrameType.request || busy) {
      throw new RbeeError('invalid_request', busy ? 'a request before the last one was answered' : `frame type ${frame.type} from the hive`);
    }
    if (!authorized) {
      refuse();
      return;
    }
    const {path, body} = decodeRequest(frame.payload);
    busy = true;
    void serveRequest(socket, path, body, handle).finally(() => {
      busy = false;
    });
  };
  socket.on('data', (chunk: Buffer) => {
    try {
      for (const frame of reader.push(chunk)) {
        onFrame(frame);
      }
    } catch (error) {
      log(`worker link: dropped a connection: ${(error as Error).message}`);
      socket.destroy();
    }
  });
  socket.on('error', () => undefined); // a hive gone mid-answer: the close that follows does the rest
  socket.on('close', () => clearTimeout(helloTimer));
}

/** Serves the link on `socketPath` (replacing a stale socket a dead worker of the same id left). */
export async function serveWorkerLink(socketPath: string, key: string, handle: Handle, log: (message: string) => void): Promise<WorkerLink> {
  fs.rmSync(socketPath, {force: true});
  const sockets = new Set<net.Socket>();
  const server = net.createServer(socket => {
    sockets.add(socket);
    socket.once('close', () => sockets.delete(socket));
    serveConnection(socket, key, handle, log);
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(socketPath, () => {
      server.off('error', reject);
      resolve();
    });
  });
  fs.chmodSync(socketPath, 0o600);
  return {
    close: () =>
      new Promise<void>(resolve => {
        server.close(() => resolve());
        for (const socket of sockets) {
          socket.destroy();
        }
        fs.rmSync(socketPath, {force: true});
      }),
  };
}
