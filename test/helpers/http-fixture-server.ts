/**
 * A throwaway HTTP server on 127.0.0.1 for tests that need a real network peer (downloads,
 * package indexes). It records every request so tests can assert what was (not) fetched.
 */
import http from 'node:http';
import type {AddressInfo} from 'node:net';

export type RecordedRequest = {method: string; url: string; headers: http.IncomingHttpHeaders};

export type FixtureHandler = (request: http.IncomingMessage, response: http.ServerResponse) => void | Promise<void>;

export type FixtureServer = {
  /** Base URL without a trailing slash, e.g. `http://127.0.0.1:41234`. */
  url: string;
  requests: RecordedRequest[];
  close(): Promise<void>;
};

export async function startFixtureServer(handler: FixtureHandler): Promise<FixtureServer> {
  const requests: RecordedRequest[] = [];
  const server = http.createServer((request, response) => {
    requests.push({method: request.method ?? 'GET', url: request.url ?? '/', headers: request.headers});
    Promise.resolve(handler(request, response)).catch((error: unknown) => {
      if (!response.headersSent) {
        response.writeHead(500, {'content-type': 'text/plain'});
      }
      response.end(String(error));
    });
  });
  server.listen(0, '127.0.0.1');
  await new Promise<void>((resolve, reject) => {
    server.once('listening', resolve);
    server.once('error', reject);
  });
  const {port} = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    requests,
    async close() {
      server.closeAllConnections();
      await new Promise<void>(resolve => server.close(() => resolve()));
    },
  };
}

export type SendBytesOptions = {
  headers?: http.OutgoingHttpHeaders;
  /** Answer `Range` requests with 206 (the default) or ignore them like some servers do. */
  honorRange?: boolean;
  /** Send this many body bytes, then kill the connection: a dropped download. */
  dropAfterBytes?: number;
};

/** Serves `body`, honouring `Range: bytes=N-` unless told not to. */
export function sendBytes(request: http.IncomingMessage, response: http.ServerResponse, body: Buffer, options: SendBytesOptions = {}): void {
  const headers: http.OutgoingHttpHeaders = {'content-type': 'application/octet-stream', ...options.headers};
  const range = /^bytes=(\d+)-$/.exec(request.headers.range ?? '');
  let status = 200;
  let slice = body;
  if (range?.[1] !== undefined && options.honorRange !== false) {
    const start = Number(range[1]);
    if (start >= body.length) {
      response.writeHead(416, {...headers, 'content-range': `bytes */${body.length}`});
      response.end();
      return;
    }
    status = 206;
    slice = body.subarray(start);
    headers['content-range'] = `bytes ${start}-${body.length - 1}/${body.length}`;
  }
  response.writeHead(status, {...headers, 'content-length': slice.length});
  if (options.dropAfterBytes === undefined) {
    response.end(slice);
    return;
  }
  response.write(slice.subarray(0, options.dropAfterBytes));
  // Give the bytes time to reach the client before the connection dies.
  setTimeout(() => response.socket?.destroy(), 100);
}
