/** The one SSE reader: events as the standard parses them, however the bytes are cut into chunks. */
import test from 'ava';
import {readSse, SseParser, type SseEvent} from '../../src/protocol/sse-reader.js';

async function* chunks(parts: Array<string | Uint8Array>): AsyncGenerator<Uint8Array> {
  for (const part of parts) {
    yield typeof part === 'string' ? new TextEncoder().encode(part) : part;
  }
}

async function read(parts: Array<string | Uint8Array>): Promise<SseEvent[]> {
  const events: SseEvent[] = [];
  for await (const event of readSse(chunks(parts))) {
    events.push(event);
  }
  return events;
}

const stream =
  ': keep-alive\n\ndata: {"a":1}\n\nevent: tick\nid: 7\ndata: first\ndata:second\n\r\ndata: crlf\r\n\r\ndata: cr\r\rerror: {"message":"boom"}\n\ndata: cut off';

test('comments are skipped; data lines join with newlines; event, id and unknown fields are kept; LF, CRLF and CR all end lines; a cut-off event is dropped', async t => {
  const events = await read([stream]);
  t.deepEqual(events, [
    {event: 'message', data: '{"a":1}', id: undefined, extra: {}},
    {event: 'tick', data: 'first\nsecond', id: '7', extra: {}},
    {event: 'message', data: 'crlf', id: '7', extra: {}},
    {event: 'message', data: 'cr', id: '7', extra: {}},
    {event: 'message', data: '', id: '7', extra: {error: '{"message":"boom"}'}},
  ]);
});

test('the same events whatever the chunking: one byte at a time, a CRLF split between chunks, a UTF-8 character split', async t => {
  const whole = await read([stream]);
  const bytes = new TextEncoder().encode(stream);
  t.deepEqual(await read([...bytes].map(byte => Uint8Array.of(byte))), whole);
  const crlf = stream.indexOf('\r\n');
  t.deepEqual(await read([stream.slice(0, crlf + 1), stream.slice(crlf + 1)]), whole);
  const bee = new TextEncoder().encode('data: 🐝\n\n');
  t.deepEqual(await read([bee.slice(0, 8), bee.slice(8)]), [{event: 'message', data: '🐝', id: undefined, extra: {}}]);
});

test('breaking out of the loop stops reading the body', async t => {
  let pulled = 0;
  async function* endless(): AsyncGenerator<Uint8Array> {
    for (;;) {
      pulled++;
      yield new TextEncoder().encode('data: x\n\n');
    }
  }
  for await (const event of readSse(endless())) {
    t.is(event.data, 'x');
    break;
  }
  t.is(pulled, 1);
});

test('cut in two at every byte (mid-line, mid-CRLF, mid-character), the events are the same', async t => {
  const bytes = new TextEncoder().encode(
    ': keep-alive\n\ndata: {"content":"héllo 🐝"}\n\nevent: progress\r\ndata: 50\r\n\r\nid: 7\ndata:no space\ndata\n\ndata: [DONE]\n\n',
  );
  const whole = await read([bytes]);
  t.deepEqual(
    whole.map(event => event.data),
    ['{"content":"héllo 🐝"}', '50', 'no space\n', '[DONE]'],
  );
  for (let cut = 1; cut < bytes.length; cut++) {
    t.deepEqual(await read([bytes.subarray(0, cut), bytes.subarray(cut)]), whole, `cut at byte ${cut}`);
  }
});

test('SseParser, fed chunk by chunk, gives the events readSse gives, each with the chunk that completes it', t => {
  const parser = new SseParser();
  const bytes = new TextEncoder().encode(stream);
  const seen: Array<{at: number; data: string}> = [];
  bytes.forEach((byte, at) => {
    for (const event of parser.push(Uint8Array.of(byte))) {
      seen.push({at, data: event.data});
    }
  });
  t.deepEqual(parser.end(), [], 'the cut-off last event is dropped at the end');
  t.deepEqual(
    seen.map(event => event.data),
    ['{"a":1}', 'first\nsecond', 'crlf', 'cr', ''],
  );
  // An event comes out with the byte that ends its blank line, not later.
  const firstEnd = new TextEncoder().encode(': keep-alive\n\ndata: {"a":1}\n\n').length - 1;
  t.is(seen[0]!.at, firstEnd);
});
