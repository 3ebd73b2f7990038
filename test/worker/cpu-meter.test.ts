import {spawn} from 'node:child_process';
import test from 'ava';
import {createCpuMeter} from '../../src/worker/cpu-meter.js';
import {waitFor} from '../helpers/process-tree.js';

test('the CPU meter counts the process tree: a busy child shows as tens of % of a core, an idle tree as little', async t => {
  const meter = createCpuMeter(process.pid);
  // A child that spins for a while: its time is the tree's (an engine subprocess is where the work is).
  const child = spawn(process.execPath, ['-e', 'const end = Date.now() + 1500; while (Date.now() < end) {}'], {stdio: 'ignore'});
  t.teardown(() => child.kill('SIGKILL'));
  const exited = new Promise(resolve => child.once('exit', resolve));
  let busiest = 0;
  let running = true;
  void exited.then(() => {
    running = false;
  });
  await waitFor(
    async () => {
      await new Promise(resolve => setTimeout(resolve, 250));
      busiest = Math.max(busiest, meter.sample());
      return busiest >= 20 || !running;
    },
    10_000,
    'a sample while the child spins',
  );
  t.true(busiest >= 20, `a spinning child counts (${busiest}%)`);
  await exited;
  meter.sample();
  await new Promise(resolve => setTimeout(resolve, 300));
  const idle = meter.sample();
  t.true(idle >= 0 && idle < 80, `idle afterwards (${idle}%)`);
});
