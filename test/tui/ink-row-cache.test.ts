/**
 * The row cache (src/tui/ink-row-cache.ts) must give exactly the frame ink's own Output.get gives:
 * checked on hand-made writes that reach ink's corner cases, on random ones, and on every frame of
 * a live dashboard (heartbeats, selection, panes, a worker group, wide characters).
 */
import test from 'ava';
import {createElement} from 'react';
import {Dashboard} from '../../src/tui/components/Dashboard.js';
import {inkOutputClass, installInkRowCache, rowCachedGet, type InkOutput, type InkOutputClass} from '../../src/tui/ink-row-cache.js';
import {waitFor} from '../helpers/process-tree.js';
import {fakeHive, heartbeatEvent, iso, workerInfo} from './helpers/fake-hive.js';
import {renderTui} from './helpers/render.js';

const Output = (await inkOutputClass()) as InkOutputClass;
// The tests that put their own get into ink's Output run one at a time (test.serial).
const inkGet = Output.prototype.get;

type Write = {x: number; y: number; text: string; transformers?: Array<(line: string, index: number) => string>};

/** The frame from ink's Output.get and from the cache (after `before` frames through the same cache). */
function both(width: number, height: number, frames: Array<{writes: Write[]; clip?: boolean}>) {
  const cached = rowCachedGet(Output, inkGet);
  return frames.map(({writes, clip}) => {
    const output = new Output({width, height});
    if (clip === true) {
      (output as unknown as {clip(clip: object): void}).clip({x1: 1, x2: 4, y1: undefined, y2: undefined});
    }
    for (const {x, y, text, transformers = []} of writes) {
      output.write(x, y, text, {transformers});
    }
    return {ink: inkGet.call(output), cached: cached.call(output)};
  });
}

test.serial('ink Output is found and the cache installs into it', async t => {
  t.truthy(Output, 'ink/build/output.js not found or not shaped as expected: see src/tui/ink-row-cache.ts');
  t.true(await installInkRowCache());
  t.not(Output.prototype.get, inkGet);
  const installedGet = Output.prototype.get;
  t.true(await installInkRowCache());
  t.is(Output.prototype.get, installedGet, 'installed once');
  Output.prototype.get = inkGet;
});

test("corner cases give ink's frame: rows off screen, overlaps, wide characters, styles, transforms, clips", t => {
  const red = (text: string) => `\u001B[31m${text}\u001B[39m`;
  const cases: Array<{width: number; height: number; writes: Write[]; clip?: boolean}> = [
    {width: 10, height: 3, writes: []},
    {width: 10, height: 3, writes: [{x: 0, y: -1, text: 'a\nb\nc'}]},
    {width: 10, height: 3, writes: [{x: 2, y: 1, text: 'one\ntwo\nthree\nfour'}]},
    {
      width: 10,
      height: 3,
      writes: [
        {x: 0, y: 0, text: 'abcdefghijklmn'},
        {x: 3, y: 0, text: red('XY')},
        {x: -2, y: 2, text: 'zz top'},
      ],
    },
    {
      width: 8,
      height: 2,
      writes: [
        {x: 0, y: 0, text: '漢字かな'},
        {x: 3, y: 0, text: 'x'},
        {x: 6, y: 1, text: '漢字'},
      ],
    },
    {
      width: 12,
      height: 2,
      writes: [
        {x: 0, y: 0, text: `\u001B[7m${red('sel')} ected\u001B[27m`},
        {x: 0, y: 1, text: '\u001B[1m▁▂█\u001B[22m ⚠ 3s'},
      ],
    },
    {width: 10, height: 3, writes: [{x: 0, y: 0, text: '   \n   ', transformers: [(line, index) => `${index}:${line.trim()}`, line => red(line)]}]},
    {width: 10, height: 3, writes: [{x: 0, y: 0, text: 'x', transformers: [() => 'two\nlines']}]},
    {width: 10, height: 3, writes: [{x: 0, y: 0, text: 'clipped text'}], clip: true},
  ];
  for (const [index, {width, height, writes, clip}] of cases.entries()) {
    const [frame] = both(width, height, [{writes, clip}]);
    t.deepEqual(frame!.cached, frame!.ink, `case ${index}`);
  }
});

test("random frames, one after another through one cache, give ink's frames", t => {
  let seed = 42;
  const random = () => {
    seed = (seed * 1_103_515_245 + 12_345) % 2 ** 31;
    return seed / 2 ** 31;
  };
  const pieces = ['a', 'bc', ' ', '█░', '漢', '\u001B[32mok\u001B[39m', '\u001B[1mB\u001B[22m', '▁▇', '…', 'x\ny'];
  const frames = Array.from({length: 400}, () => ({
    writes: Array.from({length: Math.floor(random() * 8)}, () => ({
      x: Math.floor(random() * 14) - 2,
      y: Math.floor(random() * 7) - 1,
      text: Array.from({length: 1 + Math.floor(random() * 4)}, () => pieces[Math.floor(random() * pieces.length)]).join(''),
    })),
  }));
  // Half the frames repeat their predecessor's writes, as most rows of the dashboard do.
  for (let index = 1; index < frames.length; index += 2) {
    frames[index] = frames[index - 1]!;
  }
  for (const [index, frame] of both(12, 5, frames).entries()) {
    t.deepEqual(frame.cached, frame.ink, `frame ${index}`);
  }
});

test("rows of cells apart, as the table writes them, are joined from their cells and give ink's frames", t => {
  let seed = 7;
  const random = () => {
    seed = (seed * 1_103_515_245 + 12_345) % 2 ** 31;
    return seed / 2 ** 31;
  };
  const red = (text: string) => `\u001B[31m${text}\u001B[39m`;
  const cells = [
    'worker-1',
    'ab  ',
    '  7',
    red('ready '),
    red(''),
    '\u001B[1m⚠ 3s\u001B[22m',
    '漢字',
    'e\u0301x',
    ' ',
    '',
    '▁▂█ 12.5',
    '\u001B[7minverse\u001B[27m',
    'tail   ',
  ];
  const frames = Array.from({length: 300}, () => ({
    writes: Array.from({length: 4}, (_, y) => {
      const row: Write[] = [];
      let x = Math.floor(random() * 3);
      for (let index = 0; index < 1 + Math.floor(random() * 6); index++) {
        const text = cells[Math.floor(random() * cells.length)]!;
        row.push({x, y, text});
        // Cells one to three columns apart; now and then one that touches its neighbour or runs past the row's end.
        x += text.length + (random() < 0.1 ? 0 : 1 + Math.floor(random() * 3));
      }
      return row;
    }).flat(),
  }));
  for (let index = 1; index < frames.length; index += 3) {
    frames[index] = frames[index - 1]!;
  }
  for (const [index, frame] of both(40, 4, frames).entries()) {
    t.deepEqual(frame.cached, frame.ink, `frame ${index}`);
  }
});

test('a row whose one cell changed costs ink that cell only, not the row', t => {
  let calls = 0;
  const counted = function (this: InkOutput) {
    calls++;
    return inkGet.call(this);
  };
  const cached = rowCachedGet(Output, counted);
  const frame = (age: string) => {
    const output = new Output({width: 60, height: 1});
    ['worker-00000001', '\u001B[32mready\u001B[39m', 'gemma-3-270m', age].forEach((text, index) => output.write(2 + index * 16, 0, text, {transformers: []}));
    return output;
  };
  t.is(cached.call(frame('0.1s')).output, inkGet.call(frame('0.1s')).output);
  t.is(calls, 4, 'each cell made once');
  calls = 0;
  t.is(cached.call(frame('0.3s')).output, inkGet.call(frame('0.3s')).output);
  t.is(calls, 1, 'only the changed cell');
});

test.serial('every frame of a live dashboard is the frame ink would draw', async t => {
  const checked = {frames: 0, mismatches: [] as string[]};
  const cached = rowCachedGet(Output, inkGet);
  Output.prototype.get = function (this: InkOutput) {
    const ink = inkGet.call(this);
    const ours = cached.call(this);
    checked.frames++;
    if (ours.output !== ink.output || ours.height !== ink.height) {
      checked.mismatches.push(`ink:\n${ink.output}\ncached:\n${ours.output}`);
    }
    return ours;
  };
  const now = Date.now();
  const workers = Array.from({length: 60}, (_, index) =>
    workerInfo({
      worker_id: `worker-${String(index).padStart(8, '0')}`,
      model: index % 7 === 3 ? 'qwen-漢字-model' : 'gemma-3-270m-q4_k_m',
      device: index % 3 === 0 ? 'cpu' : `cuda:${index % 2}`,
      started_at: iso(now - 60_000 - index * 1_000),
    }),
  );
  const hive = fakeHive(workers);
  const ui = renderTui(createElement(Dashboard, {api: hive, colors: true, options: {flushMs: 10, tickMs: 50, statusEveryMs: 200}}), {columns: 160, rows: 40});
  try {
    await ui.waitForFrame(/worker-00000059|rows 1-/);
    for (let round = 0; round < 12; round++) {
      for (const [index, worker] of workers.entries()) {
        if ((index + round) % 4 === 0) {
          hive.emit(
            heartbeatEvent(
              {
                worker_id: worker.worker_id,
                throughput_tokens_per_second: (index * 13 + round * 7) % 90,
                queue_depth: round % 3,
                ...(index >= 54 && index < 57
                  ? {group_id: 'group-a', role: index === 54 ? 'coordinator' : 'shard', ...(index === 54 ? {group_health: 'healthy'} : {})}
                  : {}),
              },
              now + round * 100,
            ),
          );
        }
      }
      const before = checked.frames;
      ui.press(['j', 'j', 'k', '?', '?', 'l', 'pageDown', 'pageUp', 'j', 'l', 'j', 'k'][round]!);
      // Each round drawn before the next (ink draws at most 30 frames a second, later on a busy machine).
      await waitFor(() => checked.frames > before, 5_000, `a frame after round ${round}`);
    }
    await ui.waitForFrame(/group group-a/);
  } finally {
    ui.unmount();
    Output.prototype.get = inkGet;
  }
  t.true(checked.frames >= 12, `only ${checked.frames} frames checked`);
  t.deepEqual(checked.mismatches.slice(0, 1), []);
});
