import test from 'ava';
import {lineSplitter} from '../../src/adapters/line-splitter.js';
import {spawnEngineProcess} from '../../src/adapters/engine-process.js';

function collect(chunks: Buffer[], maxLineBytes?: number): string[] {
  const lines: string[] = [];
  const splitter = lineSplitter(line => lines.push(line), maxLineBytes);
  for (const chunk of chunks) {
    splitter.push(chunk);
  }
  splitter.end();
  return lines;
}

test('a line cut across chunks, and a character cut across chunks, come out whole', t => {
  const text = Buffer.from('loading model: 50 % ✓\r\nready on port 8080\nlast line without newline');
  const cut = text.indexOf('✓') + 1; // inside the three bytes of the check mark
  t.deepEqual(collect([text.subarray(0, 5), text.subarray(5, cut), text.subarray(cut)]), [
    'loading model: 50 % ✓',
    'ready on port 8080',
    'last line without newline',
  ]);
});

test('blank lines are dropped; a line longer than the limit is passed on in pieces', t => {
  t.deepEqual(collect([Buffer.from('\n\n  \na\n')]), ['a']);
  t.deepEqual(collect([Buffer.from('x'.repeat(10)), Buffer.from('y'.repeat(10)), Buffer.from('z\n')], 15), ['x'.repeat(10) + 'y'.repeat(10), 'z']);
});

test('an engine process that writes a line in two pieces is reported one line', async t => {
  const lines: string[] = [];
  const engine = spawnEngineProcess({
    command: process.execPath,
    // The second half comes after the first has surely been read as its own chunk.
    args: ['-e', "process.stdout.write('listening on 127.0.0.1:'); setTimeout(() => { process.stdout.write('8080\\n'); process.stderr.write('warn'); }, 200);"],
    onOutput: line => lines.push(line),
  });
  const exit = await engine.exited;
  t.is(exit.code, 0);
  // 'end' of both pipes may follow 'exit': wait for both lines, bounded by the test timeout.
  while (lines.length < 2) {
    await new Promise(resolve => setImmediate(resolve));
  }
  t.deepEqual([...lines].sort(), ['listening on 127.0.0.1:8080', 'warn']);
  t.true(engine.recentOutput().includes('listening on 127.0.0.1:8080'));
});
