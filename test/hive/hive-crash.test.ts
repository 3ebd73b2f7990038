/**
 * The hive itself dies (kill -9). Left down, its workers must not outlive it; restarted in time,
 * it takes them back without restarting any.
 */
import test from 'ava';
import {WorkerInfoSchema} from '../../src/protocol/wire.js';
import {freePort} from '../../src/http/free-port.js';
import {isAlive, processesMentioning, waitFor} from '../helpers/process-tree.js';
import {getJson, postJson, startHive, tempHome, type RunningHive} from '../helpers/rbee-process.js';
import {defaultModelPath} from '../helpers/test-model.js';

const orphanTimeoutMs = 3_000;
const args = (port: number) => ['--port', String(port), '--heartbeat-interval', '300', '--orphan-timeout', String(orphanTimeoutMs)];
const hives: RunningHive[] = [];

test.after.always(async () => {
  await Promise.all(hives.map(hive => hive.stop()));
});

async function hiveWithWorker(home: string, port: number) {
  const hive = await startHive({home, args: args(port)});
  hives.push(hive);
  const spawned = await postJson(`${hive.url}/v1/workers`, {model: await defaultModelPath(), threads: 1, parallel: 1, context_size: 512});
  const id = spawned.body.worker_id as string;
  await waitFor(async () => (await getJson(`${hive.url}/v1/workers/${id}`)).body.state === 'ready', 60_000, 'worker ready');
  return {hive, worker: WorkerInfoSchema.parse((await getJson(`${hive.url}/v1/workers/${id}`)).body)};
}

test.serial('kill -9 the hive and leave it down: after the orphan timeout no worker process remains', async t => {
  const {hive, worker} = await hiveWithWorker(tempHome(), 0);
  hive.child.kill('SIGKILL');
  const killedAt = Date.now();
  await hive.stop();
  t.true(isAlive(worker.pid!), 'the worker outlives the hive for a while, in case it comes back');
  await waitFor(() => processesMentioning(worker.worker_id).length === 0, orphanTimeoutMs + 10_000, 'the orphaned worker to exit');
  const gone = Date.now() - killedAt;
  t.log(`worker gone ${gone} ms after the hive was killed (orphan timeout ${orphanTimeoutMs} ms)`);
  t.true(gone >= orphanTimeoutMs - 500);
  t.false(isAlive(worker.pid!));
});

test.serial('kill -9 the hive and restart it within the orphan timeout: workers are re-adopted, same pids', async t => {
  const home = tempHome();
  const port = await freePort();
  const first = await hiveWithWorker(home, port);
  first.hive.child.kill('SIGKILL');
  await first.hive.stop();

  const second = await startHive({home, args: args(port)});
  hives.push(second);
  const adopted = WorkerInfoSchema.parse((await getJson(`${second.url}/v1/workers/${first.worker.worker_id}`)).body);
  t.is(adopted.pid, first.worker.pid);
  t.true(adopted.adopted);
  await waitFor(
    async () => (await getJson(`${second.url}/v1/workers/${first.worker.worker_id}`)).body.state === 'ready',
    5_000,
    'the adopted worker to heartbeat',
  );
  const answer = await postJson(`${second.url}/v1/infer`, {prompt: 'Hello', max_tokens: 4, temperature: 0});
  t.is(answer.status, 200, JSON.stringify(answer.body));
  t.is(answer.body.worker_id, first.worker.worker_id);
  // Well past the orphan timeout: it stayed, because the new hive answers it.
  await new Promise(resolve => setTimeout(resolve, orphanTimeoutMs + 500));
  const later = WorkerInfoSchema.parse((await getJson(`${second.url}/v1/workers/${first.worker.worker_id}`)).body);
  t.is(later.pid, first.worker.pid);
  t.is(later.restarts, 0);
  t.is(later.state, 'ready');

  // And the new hive stops what it adopted.
  t.is(await second.stop(), 0);
  t.false(isAlive(first.worker.pid!));
});
