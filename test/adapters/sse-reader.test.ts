/** The one SSE reader: events come out the same however the bytes are cut into chunks. */
import test from 'ava';
import {readSse, sseReader, type SseEvent} from '../../src/adapters/sse-reader.js';

// Every rule an engine's stream leans on: LF, CRLF and CR line ends, comments, named events,
// multi-line data, a field without a value, an id, and characters of several bytes.
const stream = [
  ': keep-alive\n\n',
  'data: {"content":"héllo 🐝"}\n\n',
  'event: progress\r\ndata: 50\r\n\r\n',
  'data: first line\rdata: second line\r\r',
  'id: 7\ndata:no space\ndata\n\n',
  'data: [DONE]\n\n',
].join('');

const expected: SseEvent[] = [
  {event: 'message', data: '{"content":"héllo 🐝"}'},
  {event: 'progress', data: '50'},
  {event: 'message', data: 'first line\nsecond line'},
  {event: 'message', data: 'no space\n', id: '7'},
  {event: 'message', data: '[DONE]', id: '7'},
];

function read(chunks: Uint8Array[]): SseEvent[] {
  const events: SseEvent[] = [];
  const reader = sseReader(event => events.push(event));
  for (const chunk of chunks) {
    reader.push(chunk);
  }
  reader.end();
  return events;
}

test('one chunk: every event, with its name, data lines joined, comments skipped', t => {
  t.deepEqual(read([Buffer.from(stream)]), expected);
});

test('cut in two at every byte (mid-line, mid-CRLF, mid-character), the events are the same', t => {
  const bytes = Buffer.from(stream);
  for (let cut = 1; cut < bytes.length; cut++) {
    t.deepEqual(read([bytes.subarray(0, cut), bytes.subarray(cut)]), expected, `cut at byte ${cut}`);
  }
});

test('one byte at a time, the events are the same', t => {
  const bytes = Buffer.from(stream);
  t.deepEqual(read([...bytes].map(byte => Uint8Array.of(byte))), expected);
});

test('an event is dispatched when its blank line arrives, not before, and a cut-off last event is dropped', t => {
  const events: SseEvent[] = [];
  const reader = sseReader(event => events.push(event));
  reader.push(Buffer.from('data: {"a":1}\n'));
  t.deepEqual(events, [], 'no blank line yet: the event may have more data lines');
  reader.push(Buffer.from('\ndata: {"half'));
  t.deepEqual(events, [{event: 'message', data: '{"a":1}'}]);
  reader.end();
  t.is(events.length, 1, 'an engine that died mid-event leaves no half event behind');
});

test('readSse reads a fetch-like body', async t => {
  async function* body() {
    yield Buffer.from('data: one\n');
    yield Buffer.from('\ndata: two\n\n');
  }
  const events: string[] = [];
  await readSse(body(), event => events.push(event.data));
  t.deepEqual(events, ['one', 'two']);
});
