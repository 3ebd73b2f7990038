/**
 * An engine outlives no worker: one killed outright (SIGKILL, no exit code runs, no hive to
 * clean its process group) takes its engine with it, by the kernel's parent-death signal.
 */
import {spawn} from 'node:child_process';
import test from 'ava';
import {parentDeathWrapper, spawnEngineProcess} from '../../src/adapters/engine-process.js';
import {isAlive, waitFor} from '../helpers/process-tree.js';

const linuxWithSetpriv = process.platform === 'linux' && parentDeathWrapper() !== null;

(linuxWithSetpriv ? test : test.skip)('a worker killed with SIGKILL takes its engine with it', async t => {
  // A stand-in worker: a Node process that starts an engine through the adapters' own spawner, says its pid, and waits.
  const script = [
    "import {spawnEngineProcess} from './src/adapters/engine-process.ts';",
    "const engine = spawnEngineProcess({command: 'sleep', args: ['300'], onOutput: () => undefined});",
    'process.stdout.write(`${engine.pid}\\n`);',
    'setInterval(() => undefined, 1000);',
  ].join('\n');
  const worker = spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], {stdio: ['ignore', 'pipe', 'inherit'], detached: true});
  t.teardown(() => {
    try {
      process.kill(-worker.pid!, 'SIGKILL');
    } catch {
      // gone already
    }
  });
  const enginePid = await new Promise<number>((resolve, reject) => {
    let out = '';
    worker.stdout.on('data', (chunk: Buffer) => {
      out += chunk.toString();
      if (out.includes('\n')) {
        resolve(Number(out.trim()));
      }
    });
    worker.once('exit', code => reject(new Error(`the stand-in worker exited (${code}) before starting its engine`)));
  });
  await waitFor(() => isAlive(enginePid), 10_000, 'the engine to run');
  // Kill the worker alone, not its group: what an OOM kill or a crash does.
  process.kill(worker.pid!, 'SIGKILL');
  await waitFor(() => !isAlive(enginePid), 10_000, 'the engine to die with its worker');
  t.false(isAlive(enginePid));
});

test('the engine keeps its own pid and argv under the wrapper, and its exit is reported', async t => {
  const lines: string[] = [];
  const engine = spawnEngineProcess({
    command: process.execPath,
    args: ['-e', 'console.log(process.argv.length); process.exit(3)'],
    onOutput: line => lines.push(line),
  });
  const exit = await engine.exited;
  t.deepEqual(exit, {code: 3, signal: null});
  t.deepEqual(lines, ['1'], 'node saw no wrapper arguments');
});

test('a command that does not exist fails to start, with its name in the output', async t => {
  const engine = spawnEngineProcess({command: '/nonexistent/rbee-engine', args: [], onOutput: () => undefined});
  const exit = await engine.exited;
  t.not(exit.code, 0);
  t.regex(engine.recentOutput(), /rbee-engine/);
});
