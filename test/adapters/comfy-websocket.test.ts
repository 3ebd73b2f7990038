/** The small RFC 6455 client the comfyui adapter reads ComfyUI's /ws with, against a server written here frame by frame. */
import crypto from 'node:crypto';
import http from 'node:http';
import type {AddressInfo} from 'node:net';
import type {Duplex} from 'node:stream';
import test from 'ava';
import {connectTextSocket} from '../../adapters/comfyui/src/comfy-websocket.js';

function frame(opcode: number, payload: Buffer, fin = true): Buffer {
  const head = [(fin ? 0x80 : 0) | opcode];
  if (payload.length < 126) {
    head.push(payload.length);
    return Buffer.concat([Buffer.from(head), payload]);
  }
  if (payload.length < 65_536) {
    const length = Buffer.alloc(2);
    length.writeUInt16BE(payload.length);
    return Buffer.concat([Buffer.from([...head, 126]), length, payload]);
  }
  const length = Buffer.alloc(8);
  length.writeBigUInt64BE(BigInt(payload.length));
  return Buffer.concat([Buffer.from([...head, 127]), length, payload]);
}

/** A client frame's payload, unmasked (every client frame must be masked). */
function readClientFrame(data: Buffer): {opcode: number; masked: boolean; payload: Buffer} {
  const opcode = data[0]! & 0x0f;
  const masked = (data[1]! & 0x80) !== 0;
  const length = data[1]! & 0x7f;
  const mask = data.subarray(2, 6);
  const payload = Buffer.from(data.subarray(6, 6 + length).map((byte, index) => byte ^ mask[index % 4]!));
  return {opcode, masked, payload};
}

async function server(onUpgrade: (socket: Duplex, key: string, url: string) => void) {
  const httpServer = http.createServer((_request, response) => response.writeHead(404).end());
  // An upgraded socket is the test's own: the server's close would wait for it forever.
  const upgraded = new Set<Duplex>();
  httpServer.on('upgrade', (request, socket) => {
    upgraded.add(socket);
    onUpgrade(socket, String(request.headers['sec-websocket-key']), request.url ?? '');
  });
  await new Promise<void>(resolve => httpServer.listen(0, '127.0.0.1', resolve));
  return {
    port: (httpServer.address() as AddressInfo).port,
    close: () => {
      for (const socket of upgraded) {
        socket.destroy();
      }
      return new Promise(resolve => httpServer.close(resolve));
    },
  };
}

function accept(socket: Duplex, key: string): void {
  const hash = crypto.createHash('sha1').update(`${key}258EAFA5-E914-47DA-95CA-C5AB0DC85B11`).digest('base64');
  socket.write(`HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ${hash}\r\n\r\n`);
}

test('text frames of every length, fragmented and split across writes, arrive whole; binary is skipped; pings are answered masked', async t => {
  const medium = 'm'.repeat(300);
  const large = 'l'.repeat(70_000);
  let pong: ReturnType<typeof readClientFrame> | null = null;
  let path = '';
  const fixture = await server((socket, key, url) => {
    path = url;
    accept(socket, key);
    socket.on('data', (data: Buffer) => {
      const received = readClientFrame(data);
      if (received.opcode === 0xa) {
        pong = received;
        // Everything else once the pong proves the ping was read.
        const bytes = Buffer.concat([
          frame(0x1, Buffer.from(medium)),
          frame(0x2, Buffer.from([1, 2, 3])),
          frame(0x1, Buffer.from('frag'), false),
          frame(0x0, Buffer.from('mented')),
          frame(0x1, Buffer.from(large)),
          frame(0x8, Buffer.from([0x03, 0xe8, ...Buffer.from('bye')])),
        ]);
        // Split mid-header and mid-payload: the reader must wait for the rest.
        socket.write(bytes.subarray(0, 3));
        setImmediate(() => socket.write(bytes.subarray(3, 1_000)));
        setTimeout(() => socket.end(bytes.subarray(1_000)), 20);
      }
    });
    socket.write(Buffer.concat([frame(0x1, Buffer.from('{"type":"status"}')), frame(0x9, Buffer.from('hi'))]));
  });
  t.teardown(() => fixture.close());
  const messages: string[] = [];
  const socket = await connectTextSocket({host: '127.0.0.1', port: fixture.port, path: '/ws?clientId=abc', timeoutMs: 5_000}, text => messages.push(text));
  t.is(await socket.closed, 'bye');
  t.is(path, '/ws?clientId=abc');
  t.deepEqual(messages, ['{"type":"status"}', medium, 'fragmented', large]);
  t.truthy(pong);
  t.true(pong!.masked);
  t.is(pong!.payload.toString(), 'hi');
});

test('a refused upgrade, a wrong accept and no answer each fail the connect', async t => {
  const refusing = await server(socket => socket.end('HTTP/1.1 403 Forbidden\r\n\r\n'));
  t.teardown(() => refusing.close());
  await t.throwsAsync(
    connectTextSocket({host: '127.0.0.1', port: refusing.port, path: '/ws', timeoutMs: 5_000}, () => undefined),
    {message: /403/},
  );
  const wrong = await server(socket => socket.write('HTTP/1.1 101 Switching Protocols\r\nSec-WebSocket-Accept: nope\r\n\r\n'));
  t.teardown(() => wrong.close());
  await t.throwsAsync(
    connectTextSocket({host: '127.0.0.1', port: wrong.port, path: '/ws', timeoutMs: 5_000}, () => undefined),
    {message: /refused/},
  );
  const silent = await server(() => undefined);
  t.teardown(() => silent.close());
  await t.throwsAsync(
    connectTextSocket({host: '127.0.0.1', port: silent.port, path: '/ws', timeoutMs: 200}, () => undefined),
    {message: /no WebSocket upgrade within 200 ms/},
  );
});
