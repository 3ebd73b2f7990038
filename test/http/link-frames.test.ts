/**
 * The worker link's framing (src/http/link-frames.ts): frames survive any chunking of the byte
 * stream, and a peer that does not speak the protocol is refused by name, never buffered without end.
 */
import test from 'ava';
import {decodeHead, decodeRequest, encodeFrame, encodeHead, encodeRequest, FrameReader, FrameType, maxFramePayload} from '../../src/http/link-frames.js';

test('frames come out whole and in order however the bytes are cut', t => {
  const bytes = Buffer.concat([
    encodeFrame(FrameType.hello, 'key'),
    encodeRequest('/v1/completions', Buffer.from('{"prompt":"é"}')),
    encodeFrame(FrameType.data, Buffer.alloc(70_000, 7)),
    encodeFrame(FrameType.end),
  ]);
  for (const cut of [1, 3, 5, 6, 4096, bytes.length]) {
    const reader = new FrameReader();
    const frames = [];
    for (let at = 0; at < bytes.length; at += cut) {
      frames.push(...reader.push(bytes.subarray(at, at + cut)));
    }
    t.deepEqual(
      frames.map(frame => frame.type),
      [FrameType.hello, FrameType.request, FrameType.data, FrameType.end],
      `chunks of ${cut}`,
    );
    t.is(frames[0]!.payload.toString(), 'key');
    const request = decodeRequest(frames[1]!.payload);
    t.is(request.path, '/v1/completions');
    t.deepEqual(JSON.parse(request.body.toString()), {prompt: 'é'});
    t.is(frames[2]!.payload.length, 70_000);
    t.true(frames[2]!.payload.every(byte => byte === 7));
    t.is(frames[3]!.payload.length, 0);
  }
});

test('an unknown frame type, a frame beyond the size limit and a request shorter than its path are refused', t => {
  const unknown = encodeFrame(FrameType.data, 'x');
  unknown.writeUInt8(42, 4);
  t.throws(() => new FrameReader().push(unknown), {message: /worker link: unknown frame type 42/});
  const huge = Buffer.alloc(5);
  huge.writeUInt32BE(maxFramePayload + 1, 0);
  huge.writeUInt8(FrameType.data, 4);
  // Refused from its header alone: nothing waits for 64 MiB that will not come.
  t.throws(() => new FrameReader().push(huge), {message: /a frame of \d+ bytes/});
  const short = Buffer.from([0, 9, 47]);
  t.throws(() => decodeRequest(short), {message: /shorter than its path/});
});

test('a HEAD carries the status and the headers as they were given, and comes back the same', t => {
  const head = {status: 503, headers: {'content-type': 'application/json; charset=utf-8', 'retry-after': '2'}};
  const [frame] = new FrameReader().push(encodeHead(head));
  t.is(frame!.type, FrameType.head);
  t.deepEqual(decodeHead(frame!.payload), head);
  t.deepEqual(decodeHead(new FrameReader().push(encodeHead({status: 200, headers: {}}))[0]!.payload), {status: 200, headers: {}});
});

test('a HEAD that is not one is refused, naming what is wrong; one that cannot be written is refused before it goes', t => {
  const payload = (status: number, lines: string) => {
    const bytes = Buffer.alloc(2 + Buffer.byteLength(lines));
    bytes.writeUInt16BE(status, 0);
    bytes.write(lines, 2);
    return bytes;
  };
  t.throws(() => decodeHead(Buffer.of(1)), {message: /without its status/});
  t.throws(() => decodeHead(payload(42, '')), {message: /status 42 is not an HTTP status/});
  t.throws(() => decodeHead(payload(200, 'content-type: text/plain')), {message: /without its newline/});
  t.throws(() => decodeHead(payload(200, 'Content-Type: text/plain\n')), {message: /lower-case name/});
  t.throws(() => decodeHead(payload(200, 'no colon here\n')), {message: /"name: value"/});
  t.throws(() => encodeHead({status: 200, headers: {'x-a': 'one\r\ntwo'}}), {message: /on one line/});
});
