/**
 * The dashboard stays open for days, its lines changing every frame. ink caches every text it
 * measures, for good; the dashboard's lines hand ink a constant placeholder to measure instead
 * (components/Line.tsx), so frame after frame of new text leaves the heap where it was. React runs
 * as `rbee dashboard` runs it, in its production build (the development build keeps a performance
 * entry per render), so this file sets NODE_ENV before it loads React, and has no JSX.
 */
import v8 from 'node:v8';
import vm from 'node:vm';
import test from 'ava';

process.env.NODE_ENV = 'production';
const React = await import('react');
const {Box} = await import('ink');
const {Line} = await import('../../../src/tui/components/Line.js');
const {renderTui} = await import('../helpers/render.js');

function Lines({frame}: {frame: number}) {
  // Five lines of 150 characters, all new every frame (the selected row, the detail pane…).
  return React.createElement(
    Box,
    {flexDirection: 'column'},
    Array.from({length: 5}, (_, index) =>
      React.createElement(Line, {
        key: index,
        width: 150,
        segments: [{text: `${frame}:${index} `.padEnd(8)}, {text: `${(frame * 7_919 + index).toString(36)} `.repeat(20), color: 'green'}],
      }),
    ),
  );
}

test('2,000 frames of new text on every line leave the heap where it was', t => {
  v8.setFlagsFromString('--expose-gc');
  const gc = vm.runInNewContext('gc') as () => void;
  const heap = () => {
    gc();
    return process.memoryUsage().heapUsed / 1024 ** 2;
  };
  const ui = renderTui(React.createElement(Lines, {frame: 0}), {columns: 160, rows: 10});
  const frames = (from: number, count: number) => {
    for (let frame = from; frame < from + count; frame++) {
      ui.rerender(React.createElement(Lines, {frame}));
      ui.frames.length = 0; // ink-testing-library keeps every frame: let them go
    }
  };
  try {
    frames(1, 200);
    const before = heap();
    frames(201, 2_000);
    t.regex(ui.frame(), /^2200:0 /);
    const growth = heap() - before;
    t.log(`heap growth over 2,000 frames: ${growth.toFixed(2)} MiB`);
    // Were ink to measure the changing text itself, it would keep 10,000 lines: over 3 MiB, and growing.
    t.true(growth < 1, `${growth.toFixed(2)} MiB`);
  } finally {
    ui.unmount();
  }
});
