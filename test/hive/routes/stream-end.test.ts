/** The relay's end-marker check reads the raw bytes as they pass, however the stream is cut into chunks. */
import test from 'ava';
import {StreamEndWatch} from '../../../src/hive/routes/stream-end.js';

const rbee = (events: unknown[]) => events.map(event => `data: ${JSON.stringify(event)}\n\n`).join('');

const streams: Array<{name: string; text: string; openAi: boolean; ended: boolean}> = [
  {
    name: 'rbee, done last',
    text: rbee([
      {type: 'token', text: 'a'},
      {type: 'done', text: 'a'},
    ]),
    openAi: false,
    ended: true,
  },
  {
    name: 'rbee, error last',
    text: rbee([
      {type: 'token', text: 'a'},
      {type: 'error', error: {code: 'x'}},
    ]),
    openAi: false,
    ended: true,
  },
  {
    name: 'rbee, cut after a token',
    text: rbee([
      {type: 'token', text: 'a'},
      {type: 'token', text: 'b'},
    ]),
    openAi: false,
    ended: false,
  },
  {name: 'rbee, the only event a done', text: rbee([{type: 'done', text: ''}]), openAi: false, ended: true},
  {
    name: 'rbee, "data: " inside a token',
    text: rbee([
      {type: 'done', text: 'x'},
      {type: 'token', text: '\ndata: {"type":"done"'},
    ]),
    openAi: false,
    ended: false,
  },
  {name: 'OpenAI, [DONE]', text: `${rbee([{choices: [{text: 'a'}]}])}data: [DONE]\n\n`, openAi: true, ended: true},
  {name: 'OpenAI, error object', text: rbee([{choices: [{text: 'a'}]}, {error: {message: 'x'}}]), openAi: true, ended: true},
  {name: 'OpenAI, cut off', text: rbee([{choices: [{text: 'a'}]}]), openAi: true, ended: false},
];

function watch(pieces: Buffer[], openAi: boolean): boolean {
  const end = new StreamEndWatch();
  for (const piece of pieces) {
    end.push(piece);
  }
  return end.ended(openAi);
}

for (const stream of streams) {
  test(`${stream.name}: ${stream.ended ? 'ended' : 'not ended'}, whole, byte by byte, and cut in two or three anywhere`, t => {
    const bytes = Buffer.from(stream.text);
    t.is(watch([bytes], stream.openAi), stream.ended, 'whole');
    t.is(
      watch(
        [...bytes].map(byte => Buffer.of(byte)),
        stream.openAi,
      ),
      stream.ended,
      'byte by byte',
    );
    for (let cut = 1; cut < bytes.length; cut++) {
      t.is(watch([bytes.subarray(0, cut), bytes.subarray(cut)], stream.openAi), stream.ended, `cut at ${cut}`);
      for (let second = cut + 1; second < Math.min(bytes.length, cut + 9); second++) {
        t.is(watch([bytes.subarray(0, cut), bytes.subarray(cut, second), bytes.subarray(second)], stream.openAi), stream.ended, `cut at ${cut} and ${second}`);
      }
    }
  });
}
