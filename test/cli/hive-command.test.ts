import test from 'ava';
import {isAlive, processesMentioning} from '../helpers/process-tree.js';
import {rbee, startHive} from '../helpers/rbee-process.js';
import {defaultModelPath} from '../helpers/test-model.js';

test('rbee hive stop stops the hive and its workers, and waits until they are gone', async t => {
  const hive = await startHive({args: ['--heartbeat-interval', '300']});
  try {
    const spawned = await rbee(
      ['--json', 'worker', 'spawn', '--model', await defaultModelPath(), '--threads', '1', '--parallel', '1', '--context-size', '512', '--wait'],
      {hive},
    );
    t.is(spawned.exitCode, 0, String(spawned.stderr));
    const worker = JSON.parse(String(spawned.stdout)) as {pid: number; worker_id: string};
    const stopped = await rbee(['--json', 'hive', 'stop'], {hive});
    t.is(stopped.exitCode, 0, String(stopped.stderr));
    t.deepEqual(JSON.parse(String(stopped.stdout)), {stopped: true, url: hive.url});
    t.is(await hive.stop(), 0, 'the hive exited cleanly');
    t.false(isAlive(worker.pid));
    t.deepEqual(processesMentioning(worker.worker_id), []);
  } finally {
    await hive.stop();
  }
});

test('rbee --help lists every RBEE_ variable and the exit codes', async t => {
  const help = await rbee(['--help']);
  t.is(help.exitCode, 0);
  for (const name of ['RBEE_HOME', 'RBEE_HIVE_URL', 'RBEE_TOKEN', 'RBEE_MODEL_DIRS', 'RBEE_HF_ENDPOINT', 'RBEE_PYPI_INDEX']) {
    t.true(String(help.stdout).includes(name), name);
  }
  t.regex(String(help.stdout), /3 hive unreachable/);
});
