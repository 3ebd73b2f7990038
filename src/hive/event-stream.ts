/**
 * GET /v1/events: every heartbeat and worker change as Server-Sent Events. A slow client loses
 * heartbeats (the next one supersedes them) but never a state change, and never slows the hive.
 */
import type {FastifyInstance} from 'fastify';
import type {ServerResponse} from 'node:http';
import {startSse} from '../http/sse.js';
import {eventKeepAliveMs, type HiveEvent} from '../protocol/wire.js';

type Client = {response: ServerResponse};

export class EventStream {
  readonly #clients = new Set<Client>();

  get clients(): number {
    return this.#clients.size;
  }

  publish(event: HiveEvent): void {
    if (this.#clients.size === 0) {
      return;
    }
    const frame = `data: ${JSON.stringify(event)}\n\n`;
    for (const client of this.#clients) {
      // Backpressure: skip a heartbeat for a client whose socket is still full; state changes always go.
      if (event.type === 'heartbeat' && client.response.writableNeedDrain) {
        continue;
      }
      client.response.write(frame);
    }
  }

  register(app: FastifyInstance, snapshot: () => HiveEvent): void {
    app.get('/v1/events', async (request, reply) => {
      reply.hijack();
      startSse(reply.raw);
      const client: Client = {response: reply.raw};
      reply.raw.write(`data: ${JSON.stringify(snapshot())}\n\n`);
      this.#clients.add(client);
      // A comment every few seconds keeps proxies from closing an idle stream, and tells a
      // follower that a silent stream means a hung hive, not a quiet one.
      const keepAlive = setInterval(() => reply.raw.write(': keep-alive\n\n'), eventKeepAliveMs);
      request.raw.socket.on('close', () => {
        clearInterval(keepAlive);
        this.#clients.delete(client);
      });
    });
  }

  /** Ends every stream, so a closing hive is not held open by its dashboards. */
  close(): void {
    for (const client of this.#clients) {
      client.response.end();
    }
    this.#clients.clear();
  }
}
