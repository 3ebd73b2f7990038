import type {ServerResponse} from 'node:http';

/**
 * Starts a Server-Sent Events response on a raw socket the caller has taken over. The headers
 * are not flushed: they leave with the first event, in the same write (every caller writes one at
 * once), which on the relay's path is a write and a wakeup of the reader less before the first token.
 */
export function startSse(response: ServerResponse): void {
  response.writeHead(200, {
    'content-type': 'text/event-stream; charset=utf-8',
    'cache-control': 'no-cache, no-transform',
    connection: 'keep-alive',
    'x-accel-buffering': 'no',
  });
}

export function writeSse(response: ServerResponse, data: unknown): void {
  if (!response.writableEnded) {
    response.write(`data: ${typeof data === 'string' ? data : JSON.stringify(data)}\n\n`);
  }
}
