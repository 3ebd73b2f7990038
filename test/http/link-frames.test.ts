/**
 * The worker link's framing (src/http/link-frames.ts): frames survive any chunking of the byte
 * stream, and a peer that does not speak the protocol is refused by name, never buffered without end.
 */
import test from 'ava';
import {decodeRequest, encodeFrame, encodeRequest, FrameReader, FrameType, maxFramePayload} from '../../src/http/link-frames.js';

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
