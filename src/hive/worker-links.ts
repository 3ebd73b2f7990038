/**
 * The hive's end of its links to its workers (src/http/link-frames.ts, src/worker/worker-link.ts):
 * generation requests go to a worker over a kept Unix socket connection instead of HTTP, and come
 * back as the same `HttpAnswer` an HTTP request gives, so the relay cannot tell them apart. A
 * worker without a link (started by an older hive, a home whose path is too long for a socket, a
 * link that failed to come up) is asked over HTTP, as is everything that is not a generation.
 *
 * One request per connection at a time, as HTTP keep-alive: a slow client pauses its connection
 * only, and cancelling an answer is closing its connection.
 */
import net from 'node:net';
import path from 'node:path';
import {Readable} from 'node:stream';
import {RbeeError} from '../errors.js';
import {bodyText, type HttpAnswer} from '../http/http-request.js';
import {decodeHead, encodeFrame, encodeRequest, FrameReader, FrameType, type Frame, type LinkAnswerHead} from '../http/link-frames.js';

/** The longest socket path every platform takes (sun_path holds 108 bytes on Linux, 104 on macOS). */
const maxSocketPath = 100;

/** Where the worker `workerId` of the hive whose links live in `linksDir` serves its link; null when the path is too long for a socket. */
export function workerLinkPath(linksDir: string, workerId: string): string | null {
  const socketPath = path.join(linksDir, `${workerId}.sock`);
  return Buffer.byteLength(socketPath) <= maxSocketPath ? socketPath : null;
}

/** Connections kept per worker between requests. */
const maxIdlePerWorker = 16;
/** After a link could not be reached, how long its worker is asked over HTTP only. */
const retryLinkAfterMs = 5_000;

type Exchange = {
  onFrame(frame: Frame): void;
  /** The connection broke (or was closed) before the answer's END. */
  onBroken(error: Error): void;
};

/** One kept connection; `exchange` is the request it is answering, null while idle. */
type Connection = {socket: net.Socket; reused: boolean; exchange: Exchange | null};

function aborted(signal: AbortSignal): Error {
  return signal.reason instanceof Error ? signal.reason : new Error(`aborted: ${String(signal.reason)}`);
}

/** Errors that mean the worker serves no link there (or not now): ask it over HTTP instead. */
function noLink(error: Error): boolean {
  const code = (error as NodeJS.ErrnoException).code;
  return code === 'ENOENT' || code === 'ECONNREFUSED' || code === 'EACCES' || code === 'ENOTSOCK';
}

export class WorkerLinks {
  readonly #linksDir: string;
  readonly #idle = new Map<string, Connection[]>();
  /** Workers whose link could not be reached, and when. */
  readonly #unreachable = new Map<string, number>();

  constructor(linksDir: string) {
    this.#linksDir = linksDir;
  }

  /**
   * POSTs a generation request over the worker's link; resolves with its answer once the answer's
   * head has come, or with null when the worker has no link to take it (send it over HTTP).
   */
  request(worker: {id: string; key: string | null}, route: string, body: Buffer, signal: AbortSignal): Promise<HttpAnswer | null> {
    const socketPath = workerLinkPath(this.#linksDir, worker.id);
    const since = this.#unreachable.get(worker.id);
    if (since !== undefined && Date.now() - since >= retryLinkAfterMs) {
      this.#unreachable.delete(worker.id);
    }
    if (socketPath === null || worker.key === null || this.#unreachable.has(worker.id)) {
      return Promise.resolve(null);
    }
    if (signal.aborted) {
      return Promise.reject(aborted(signal));
    }
    const frame = encodeRequest(route, body);
    return new Promise((resolve, reject) => {
      const send = (connection: Connection) => {
        const onAbort = () => {
          connection.socket.destroy();
          fail(aborted(signal));
        };
        let settled = false;
        const fail = (error: Error) => {
          if (!settled) {
            settled = true;
            signal.removeEventListener('abort', onAbort);
            reject(error);
          }
        };
        signal.addEventListener('abort', onAbort, {once: true});
        connection.exchange = {
          onFrame: head => {
            signal.removeEventListener('abort', onAbort);
            settled = true;
            try {
              resolve(this.#answer(worker.id, connection, head, signal));
            } catch (error) {
              connection.socket.destroy();
              reject(error as Error);
            }
          },
          onBroken: error => {
            if (settled) {
              return;
            }
            if (signal.aborted) {
              fail(aborted(signal));
            } else if (connection.reused) {
              // A kept connection the worker closed as the request went out (it never read it): again, on a new one.
              settled = true;
              signal.removeEventListener('abort', onAbort);
              send(this.#connect(worker.id, socketPath, worker.key!));
            } else if (noLink(error)) {
              settled = true;
              signal.removeEventListener('abort', onAbort);
              this.#unreachable.set(worker.id, Date.now());
              resolve(null);
            } else {
              fail(new RbeeError('upstream_error', `worker ${worker.id}'s link broke before its answer: ${error.message}`, {cause: error}));
            }
          },
        };
        connection.socket.ref();
        connection.socket.write(frame);
      };
      send(this.#idleConnection(worker.id) ?? this.#connect(worker.id, socketPath, worker.key!));
    });
  }

  /** Closes every kept connection (the hive is stopping). */
  close(): void {
    for (const connections of this.#idle.values()) {
      for (const connection of connections) {
        connection.socket.destroy();
      }
    }
    this.#idle.clear();
  }

  #idleConnection(workerId: string): Connection | undefined {
    const connections = this.#idle.get(workerId);
    let connection = connections?.pop();
    while (connection !== undefined && connection.socket.destroyed) {
      connection = connections?.pop();
    }
    if (connections?.length === 0) {
      this.#idle.delete(workerId);
    }
    return connection;
  }

  #connect(workerId: string, socketPath: string, key: string): Connection {
    const socket = net.createConnection(socketPath);
    const connection: Connection = {socket, reused: false, exchange: null};
    const reader = new FrameReader();
    socket.write(encodeFrame(FrameType.hello, key));
    const broken = (error: Error) => {
      const exchange = connection.exchange;
      connection.exchange = null;
      exchange?.onBroken(error);
    };
    socket.on('data', (chunk: Buffer) => {
      let frames: Frame[];
      try {
        frames = reader.push(chunk);
      } catch (error) {
        socket.destroy(error as Error);
        return;
      }
      for (const frame of frames) {
        if (connection.exchange === null) {
          socket.destroy(new RbeeError('invalid_response', `worker ${workerId}'s link sent a frame with no request open`));
          return;
        }
        connection.exchange.onFrame(frame);
      }
    });
    socket.on('error', broken);
    socket.on('close', () => {
      broken(new Error('the connection closed'));
      const connections = this.#idle.get(workerId);
      const at = connections?.indexOf(connection) ?? -1;
      if (at >= 0) {
        connections!.splice(at, 1);
      }
    });
    return connection;
  }

  /** The answer whose HEAD frame came: its DATA frames are its body, its END gives the connection back. */
  #answer(workerId: string, connection: Connection, headFrame: Frame, signal: AbortSignal): HttpAnswer {
    if (headFrame.type !== FrameType.head) {
      throw new RbeeError('invalid_response', `worker ${workerId}'s link answered with frame type ${headFrame.type} before its head`);
    }
    let head: LinkAnswerHead;
    try {
      head = decodeHead(headFrame.payload);
    } catch (error) {
      throw new RbeeError('invalid_response', `worker ${workerId}'s link answer: ${(error as Error).message}`, {cause: error});
    }
    const {socket} = connection;
    let ended = false;
    const body = new Readable({
      read: () => {
        socket.resume();
      },
    });
    // A body cut off fails whoever reads it; this listener only keeps the same error from going unheard.
    body.on('error', () => undefined);
    const onAbort = () => {
      socket.destroy();
      body.destroy(aborted(signal));
    };
    signal.addEventListener('abort', onAbort, {once: true});
    connection.exchange = {
      onFrame: frame => {
        if (frame.type === FrameType.data) {
          if (!body.push(frame.payload)) {
            socket.pause(); // the reader is behind: the worker's writes wait in the socket, not in the hive
          }
        } else if (frame.type === FrameType.end) {
          ended = true;
          signal.removeEventListener('abort', onAbort);
          connection.exchange = null;
          body.push(null);
          this.#keep(workerId, connection);
        } else {
          socket.destroy(new RbeeError('invalid_response', `worker ${workerId}'s link sent frame type ${frame.type} within an answer`));
        }
      },
      onBroken: error => {
        signal.removeEventListener('abort', onAbort);
        body.destroy(error);
      },
    };
    const {status, headers} = head;
    return {
      status,
      ok: status >= 200 && status < 300,
      header: name => headers[name.toLowerCase()],
      body,
      text: () => bodyText(body),
      cancel() {
        if (!ended) {
          signal.removeEventListener('abort', onAbort);
          socket.destroy();
          body.destroy();
        }
      },
    };
  }

  /** A connection whose answer ended, kept for the worker's next request (closed beyond the limit). */
  #keep(workerId: string, connection: Connection): void {
    const connections = this.#idle.get(workerId) ?? [];
    if (connections.length >= maxIdlePerWorker || connection.socket.destroyed) {
      connection.socket.end();
      return;
    }
    connection.reused = true;
    connection.socket.resume();
    connection.socket.unref(); // a kept connection holds no hive open
    connections.push(connection);
    this.#idle.set(workerId, connections);
  }
}
