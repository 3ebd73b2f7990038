import type {ServerResponse} from 'node:http';

/** Starts a Server-Sent Events response on a raw socket the caller has taken over. */
export function startSse(response: ServerResponse): void {
  response.writeHead(200, {
    'content-type': 'text/event-stream; charset=utf-8',
    'cache-control': 'no-cache, no-transform',
    connection: 'keep-alive',
    'x-accel-buffering': 'no',
  });
  response.flushHeaders();
}

export function writeSse(response: ServerResponse, data: unknown): void {
  if (!response.writableEnded) {
    response.write(`data: ${typeof data === 'string' ? data : JSON.stringify(data)}\n\n`);
  }
}
