/** A stand-in hive for a worker run alone: it records each heartbeat (validated) and acknowledges it with no commands. */
import http from 'node:http';
import type net from 'node:net';
import {type Heartbeat, HeartbeatSchema} from '../../src/protocol/wire.js';

export type HeartbeatSink = {url: string; heartbeats: Heartbeat[]; close(): void};

export async function heartbeatSink(): Promise<HeartbeatSink> {
  const heartbeats: Heartbeat[] = [];
  const server = http.createServer((request, response) => {
    let body = '';
    request.on('data', chunk => {
      body += chunk;
    });
    request.on('end', () => {
      heartbeats.push(HeartbeatSchema.parse(JSON.parse(body)));
      response.writeHead(200, {'content-type': 'application/json'}).end(JSON.stringify({ack: true, commands: []}));
    });
  });
  await new Promise<void>(resolve => server.listen(0, '127.0.0.1', resolve));
  return {url: `http://127.0.0.1:${(server.address() as net.AddressInfo).port}`, heartbeats, close: () => server.close()};
}
