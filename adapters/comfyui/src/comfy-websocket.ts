/**
 * The least WebSocket client ComfyUI's /ws needs (RFC 6455 over node:net): the upgrade, then the
 * server's text frames as messages; pings answered, binary frames (preview images) skipped.
 * Written here because Node 20 has no global WebSocket and rbee takes no npm dependency for it.
 */
import crypto from 'node:crypto';
import net from 'node:net';

export type TextSocket = {
  /** Resolves when the connection closes, for whatever reason. */
  closed: Promise<string>;
  close(): void;
};

const opcodes = {continuation: 0x0, text: 0x1, binary: 0x2, close: 0x8, ping: 0x9, pong: 0xa} as const;

/** A client frame: always masked (the RFC requires it of clients). */
function clientFrame(opcode: number, payload: Buffer): Buffer {
  const mask = crypto.randomBytes(4);
  const length = payload.length;
  const header = length < 126 ? Buffer.from([0x80 | opcode, 0x80 | length]) : Buffer.from([0x80 | opcode, 0x80 | 126, length >> 8, length & 0xff]);
  const masked = Buffer.from(payload.map((byte, index) => byte ^ mask[index % 4]!));
  return Buffer.concat([header, mask, masked]);
}

export function connectTextSocket(
  options: {host: string; port: number; path: string; authorization?: string; timeoutMs: number},
  onMessage: (text: string) => void,
): Promise<TextSocket> {
  return new Promise((resolve, reject) => {
    const socket = net.connect({host: options.host, port: options.port});
    const key = crypto.randomBytes(16).toString('base64');
    const expectedAccept = crypto.createHash('sha1').update(`${key}258EAFA5-E914-47DA-95CA-C5AB0DC85B11`).digest('base64');
    let buffer = Buffer.alloc(0);
    let upgraded = false;
    let fragments: Buffer[] = [];
    let fragmentedText = false;
    let closeReason = 'closed';
    const timer = setTimeout(() => socket.destroy(new Error(`no WebSocket upgrade within ${options.timeoutMs} ms`)), options.timeoutMs);
    const closed = new Promise<string>(done => socket.once('close', () => done(closeReason)));
    socket.setNoDelay(true);
    socket.on('error', error => {
      closeReason = error.message;
      if (!upgraded) {
        clearTimeout(timer);
        reject(error);
      }
    });
    socket.on('connect', () => {
      socket.write(
        [
          `GET ${options.path} HTTP/1.1`,
          `Host: ${options.host}:${options.port}`,
          'Upgrade: websocket',
          'Connection: Upgrade',
          `Sec-WebSocket-Key: ${key}`,
          'Sec-WebSocket-Version: 13',
          ...(options.authorization === undefined ? [] : [`Authorization: ${options.authorization}`]),
          '',
          '',
        ].join('\r\n'),
      );
    });
    const readFrames = () => {
      for (;;) {
        if (buffer.length < 2) {
          return;
        }
        const fin = (buffer[0]! & 0x80) !== 0;
        const opcode = buffer[0]! & 0x0f;
        let length = buffer[1]! & 0x7f;
        let offset = 2;
        if (length === 126) {
          if (buffer.length < 4) {
            return;
          }
          length = buffer.readUInt16BE(2);
          offset = 4;
        } else if (length === 127) {
          if (buffer.length < 10) {
            return;
          }
          length = Number(buffer.readBigUInt64BE(2));
          offset = 10;
        }
        // Server frames are never masked (RFC 6455 5.1); a masked one is a protocol error.
        if ((buffer[1]! & 0x80) !== 0) {
          closeReason = 'the server sent a masked frame';
          socket.destroy();
          return;
        }
        if (buffer.length < offset + length) {
          return;
        }
        const payload = buffer.subarray(offset, offset + length);
        buffer = buffer.subarray(offset + length);
        if (opcode === opcodes.ping) {
          socket.write(clientFrame(opcodes.pong, Buffer.from(payload)));
        } else if (opcode === opcodes.close) {
          closeReason = payload.length > 2 ? payload.subarray(2).toString('utf8') : 'the server closed the WebSocket';
          socket.end(clientFrame(opcodes.close, Buffer.alloc(0)));
        } else if (opcode === opcodes.text || opcode === opcodes.binary || opcode === opcodes.continuation) {
          if (opcode !== opcodes.continuation) {
            fragments = [];
            fragmentedText = opcode === opcodes.text;
          }
          fragments.push(Buffer.from(payload));
          if (fin) {
            if (fragmentedText) {
              onMessage(Buffer.concat(fragments).toString('utf8'));
            }
            fragments = [];
          }
        }
      }
    };
    socket.on('data', (chunk: Buffer) => {
      buffer = Buffer.concat([buffer, chunk]);
      if (!upgraded) {
        const end = buffer.indexOf('\r\n\r\n');
        if (end === -1) {
          return;
        }
        const head = buffer.subarray(0, end).toString('latin1');
        buffer = buffer.subarray(end + 4);
        clearTimeout(timer);
        const accept = /^sec-websocket-accept:\s*(\S+)/im.exec(head)?.[1];
        if (!/^HTTP\/1\.1 101/.test(head) || accept !== expectedAccept) {
          socket.destroy();
          reject(new Error(`WebSocket upgrade refused: ${head.split('\r\n')[0] ?? '(no status line)'}`));
          return;
        }
        upgraded = true;
        resolve({closed, close: () => socket.end(clientFrame(opcodes.close, Buffer.alloc(0)))});
      }
      readFrames();
    });
  });
}
