import test from 'ava';
import {createProgressBar, formatBytes, formatDuration} from '../../src/models/progress-bar.js';

function fakeStream(isTTY: boolean): {writes: string[]; isTTY: boolean; columns: number; write(chunk: string): boolean} {
  const writes: string[] = [];
  return {writes, isTTY, columns: 120, write: chunk => writes.push(chunk) > 0};
}

test('on a terminal it redraws one line at most every 100 ms, with percent, bytes, rate and ETA', t => {
  const stream = fakeStream(true);
  let clock = 0;
  const bar = createProgressBar({label: 'gemma', stream, now: () => clock});
  const total = 100 * 1024 * 1024;

  bar.update({phase: 'downloading', done: 0, total});
  clock = 50;
  bar.update({phase: 'downloading', done: 1024, total});
  clock = 1000;
  bar.update({phase: 'downloading', done: 10 * 1024 * 1024, total});
  bar.done('ready');

  t.is(stream.writes.length, 3, 'the update 50 ms after the first is not drawn');
  const line = stream.writes[1] ?? '';
  t.true(line.startsWith('\rgemma downloading ['));
  t.regex(line, /10% 10\.0 MiB\/100\.0 MiB 10\.0 MiB\/s ETA 0:09/);
  t.is(stream.writes[2], '\rready\x1b[K\n');
});

test('off a terminal it writes one line per phase and no carriage returns', t => {
  const stream = fakeStream(false);
  const bar = createProgressBar({label: 'gemma', stream});

  for (let done = 0; done <= 1000; done += 100) {
    bar.update({phase: 'downloading', done, total: 1000});
  }
  bar.update({phase: 'assembling', done: 0, total: 2048});
  bar.update({phase: 'assembling', done: 2048, total: 2048});
  bar.done();

  t.deepEqual(stream.writes, ['gemma: downloading 1000 B\n', 'gemma: assembling 2.0 KiB\n']);
});

test('formats sizes and durations for humans', t => {
  t.is(formatBytes(512), '512 B');
  t.is(formatBytes(253_113_024), '241.4 MiB');
  t.is(formatDuration(9.4), '0:09');
  t.is(formatDuration(3725), '1:02:05');
});

test('step progress (a model load, an engine build) shows a bar and a percentage, no sizes or rates', t => {
  const written: string[] = [];
  const bar = createProgressBar({label: 'gemma', stream: {isTTY: true, columns: 120, write: chunk => written.push(String(chunk))}, now: () => 0});
  bar.update({phase: 'loading', done: 500, total: 1000, unit: 'steps'});
  const line = written.join('');
  t.regex(line, /gemma loading \[#{12}-{12}\] 50%/);
  t.notRegex(line, /B\/s|KiB|ETA/);
});
