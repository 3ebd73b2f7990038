/**
 * The frames of a worker link: the hive's persistent, private channel to a worker it started (a
 * Unix socket in the hive's home), over which inference requests skip HTTP. Each frame is a 5-byte
 * header (payload length, u32 big-endian; frame type, u8) and its payload. One request at a time
 * per connection, as HTTP/1.1 keep-alive: the hive opens more connections for requests at once, and
 * a connection closed before its answer's END means the request is cancelled (or the answer cut off).
 *
 *   hive → worker: HELLO (the worker's key, once per connection), REQUEST (path, then body bytes)
 *   worker → hive: HEAD (status and headers), DATA (body bytes, any number), END
 *
 * HEAD is binary, not JSON: the status (u16), then one `name: value\n` line per header (names lower
 * case). It is read on the way to every answer's first token, where a JSON parse and a schema check
 * cost the hive a tenth of a millisecond (a process woken between steps runs its code cold);
 * `decodeHead` checks it as strictly.
 */
import {RbeeError} from '../errors.js';

export const FrameType = {hello: 1, request: 2, head: 3, data: 4, end: 5} as const;
export type FrameType = (typeof FrameType)[keyof typeof FrameType];

export type Frame = {type: FrameType; payload: Buffer};

const headerBytes = 5;
/** Larger than any answer or request body a worker takes (8 MiB bodies), smaller than a mistake. */
export const maxFramePayload = 64 * 1024 * 1024;

/** A peer that does not speak the protocol: its connection is dropped. */
function linkProtocolError(message: string): RbeeError {
  return new RbeeError('invalid_response', `worker link: ${message}`);
}

const known = new Set<number>(Object.values(FrameType));

export function encodeFrame(type: FrameType, payload: Buffer | string = ''): Buffer {
  const size = typeof payload === 'string' ? Buffer.byteLength(payload) : payload.length;
  const frame = Buffer.allocUnsafe(headerBytes + size);
  frame.writeUInt32BE(size, 0);
  frame.writeUInt8(type, 4);
  if (typeof payload === 'string') {
    frame.write(payload, headerBytes, 'utf8');
  } else {
    payload.copy(frame, headerBytes);
  }
  return frame;
}

/** A REQUEST's payload: the path's length (u16), the path, the body. */
export function encodeRequest(path: string, body: Buffer): Buffer {
  const pathBytes = Buffer.from(path, 'utf8');
  const payload = Buffer.allocUnsafe(2 + pathBytes.length + body.length);
  payload.writeUInt16BE(pathBytes.length, 0);
  pathBytes.copy(payload, 2);
  body.copy(payload, 2 + pathBytes.length);
  return encodeFrame(FrameType.request, payload);
}

export function decodeRequest(payload: Buffer): {path: string; body: Buffer} {
  if (payload.length < 2 || payload.length < 2 + payload.readUInt16BE(0)) {
    throw linkProtocolError('a REQUEST frame shorter than its path');
  }
  const end = 2 + payload.readUInt16BE(0);
  return {path: payload.toString('utf8', 2, end), body: payload.subarray(end)};
}

/** What a worker's answer says before its body: the status line and headers of the same answer over HTTP. */
export type LinkAnswerHead = {status: number; headers: Record<string, string>};

const headerName = /^[a-z0-9-]+$/;

export function encodeHead(head: LinkAnswerHead): Buffer {
  let lines = '';
  for (const [name, value] of Object.entries(head.headers)) {
    if (!headerName.test(name) || /[\r\n]/.test(value)) {
      throw new RbeeError('internal', `worker link: header ${JSON.stringify(name)} cannot be sent (a lower-case name, a value on one line)`);
    }
    lines += `${name}: ${value}\n`;
  }
  const payload = Buffer.allocUnsafe(2 + Buffer.byteLength(lines));
  payload.writeUInt16BE(head.status, 0);
  payload.write(lines, 2, 'utf8');
  return encodeFrame(FrameType.head, payload);
}

/** A HEAD's payload, checked: a status 100–599 and well-formed header lines, or an error naming what is wrong. */
export function decodeHead(payload: Buffer): LinkAnswerHead {
  if (payload.length < 2) {
    throw linkProtocolError('a HEAD frame without its status');
  }
  const status = payload.readUInt16BE(0);
  if (status < 100 || status > 599) {
    throw linkProtocolError(`HEAD status ${status} is not an HTTP status (100-599)`);
  }
  const headers: Record<string, string> = {};
  const text = payload.toString('utf8', 2);
  let start = 0;
  while (start < text.length) {
    const end = text.indexOf('\n', start);
    if (end === -1) {
      throw linkProtocolError('a HEAD header line without its newline');
    }
    const line = text.slice(start, end);
    const colon = line.indexOf(': ');
    const name = colon === -1 ? '' : line.slice(0, colon);
    if (!headerName.test(name)) {
      throw linkProtocolError(`HEAD header line ${JSON.stringify(line.slice(0, 80))} is not "name: value" with a lower-case name`);
    }
    headers[name] = line.slice(colon + 2);
    start = end + 1;
  }
  return {status, headers};
}

/**
 * Cuts a byte stream into frames, whatever the chunking. A frame of an unknown type or longer than
 * `maxFramePayload` throws: the peer is not speaking this protocol, and its connection is dropped.
 */
export class FrameReader {
  #pending: Buffer[] = [];
  #pendingBytes = 0;

  push(chunk: Buffer): Frame[] {
    this.#pending.push(chunk);
    this.#pendingBytes += chunk.length;
    const frames: Frame[] = [];
    for (;;) {
      if (this.#pendingBytes < headerBytes) {
        return frames;
      }
      const head = this.#peek(headerBytes);
      const size = head.readUInt32BE(0);
      const type = head.readUInt8(4);
      if (!known.has(type)) {
        throw linkProtocolError(`unknown frame type ${type}`);
      }
      if (size > maxFramePayload) {
        throw linkProtocolError(`a frame of ${size} bytes (at most ${maxFramePayload})`);
      }
      if (this.#pendingBytes < headerBytes + size) {
        return frames;
      }
      const whole = this.#take(headerBytes + size);
      frames.push({type: type as FrameType, payload: whole.subarray(headerBytes)});
    }
  }

  #peek(bytes: number): Buffer {
    if (this.#pending[0]!.length < bytes) {
      this.#pending = [Buffer.concat(this.#pending)];
    }
    return this.#pending[0]!;
  }

  #take(bytes: number): Buffer {
    const first = this.#peek(bytes);
    this.#pendingBytes -= bytes;
    if (first.length === bytes) {
      this.#pending.shift();
      return first;
    }
    this.#pending[0] = first.subarray(bytes);
    return first.subarray(0, bytes);
  }
}
