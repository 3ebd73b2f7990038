/**
 * Spare worker processes with a real hive and real workers: a spawn of a type takes the spare the
 * hive booted for it (same id, same pid), the worker it becomes serves and is re-adopted after a
 * hive crash like any other; no spare outlives its hive, killed or stopped; a restarted hive kills
 * a stray spare of its own; a spare refuses an assignment for another worker and exits when its
 * hive's pipe closes.
 */
import {spawn} from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import test, {type ExecutionContext} from 'ava';
import {HiveStatusSchema, WorkerInfoSchema, type SpareInfo} from '../../src/protocol/wire.js';
import {freePort} from '../../src/http/free-port.js';
import {isAlive, processesMentioning, waitFor} from '../helpers/process-tree.js';
import {getJson, postJson, rbeeBin, startHive, tempHome, type RunningHive} from '../helpers/rbee-process.js';
import {defaultModelPath} from '../helpers/test-model.js';

const orphanTimeoutMs = 4_000;
const hiveArgs = (port: number) => ['--port', String(port), '--heartbeat-interval', '300', '--orphan-timeout', String(orphanTimeoutMs)];

async function hiveWith(t: ExecutionContext, options: {home?: string; port?: number; config?: unknown} = {}): Promise<RunningHive> {
  const home = options.home ?? tempHome('rbee-spare-');
  const env: NodeJS.ProcessEnv = {};
  if (options.config !== undefined) {
    const file = path.join(home, 'rbee.config.json');
    fs.writeFileSync(file, JSON.stringify(options.config), {mode: 0o600});
    env.RBEE_CONFIG = file;
  }
  const hive = await startHive({home, args: hiveArgs(options.port ?? 0), env});
  t.teardown(async () => {
    await hive.stop();
  });
  return hive;
}

async function spares(hive: RunningHive): Promise<SpareInfo[]> {
  return HiveStatusSchema.parse((await getJson(`${hive.url}/v1/status`)).body).spares ?? [];
}

async function bootedSpare(hive: RunningHive, type: string): Promise<SpareInfo> {
  let found: SpareInfo | undefined;
  await waitFor(
    async () => {
      found = (await spares(hive)).find(spare => spare.type === type && spare.booted);
      return found !== undefined;
    },
    60_000,
    `a booted ${type} spare`,
  );
  return found!;
}

async function readyWorker(hive: RunningHive, id: string) {
  await waitFor(async () => (await getJson(`${hive.url}/v1/workers/${id}`)).body.state === 'ready', 120_000, `worker ${id} ready`);
  return WorkerInfoSchema.parse((await getJson(`${hive.url}/v1/workers/${id}`)).body);
}

const llamaSpawn = async () => ({model: await defaultModelPath(), type: 'llamacpp', device: 'cpu', threads: 1, parallel: 1, context_size: 512});

test.serial('a spawn takes the booted spare of its type: same id and pid, it serves, and a new spare follows', async t => {
  t.timeout(5 * 60_000);
  const hive = await hiveWith(t);
  t.deepEqual(await spares(hive), [], 'no spare before a type is in use');

  const first = await postJson(`${hive.url}/v1/workers`, await llamaSpawn());
  t.is(first.status, 201, JSON.stringify(first.body));
  const firstWorker = await readyWorker(hive, first.body.worker_id);
  // The type is in use now: once the hive is quiet it boots a spare of it.
  const spare = await bootedSpare(hive, 'llamacpp');
  t.not(spare.worker_id, firstWorker.worker_id);
  t.deepEqual(processesMentioning(spare.worker_id), [spare.pid], 'its id is in its command line');

  const second = await postJson(`${hive.url}/v1/workers`, await llamaSpawn());
  t.is(second.status, 201, JSON.stringify(second.body));
  t.is(second.body.worker_id, spare.worker_id, 'the spawn took the spare');
  const secondWorker = await readyWorker(hive, spare.worker_id);
  t.is(secondWorker.pid, spare.pid, 'the spare process is the worker');
  t.false(
    (await spares(hive)).some(left => left.worker_id === spare.worker_id),
    'no longer listed as a spare',
  );

  // It serves like any worker: with the first one stopped, the request can only go to it.
  t.is((await fetch(`${hive.url}/v1/workers/${firstWorker.worker_id}`, {method: 'DELETE'})).status, 200);
  await waitFor(async () => (await getJson(`${hive.url}/v1/workers/${firstWorker.worker_id}`)).body.state === 'stopped', 30_000, 'the first worker stopped');
  const answer = await postJson(`${hive.url}/v1/infer`, {prompt: 'The capital of France is', max_tokens: 4, temperature: 0});
  t.is(answer.status, 200, JSON.stringify(answer.body));
  t.is(answer.body.worker_id, spare.worker_id);
  const log = fs.readFileSync(path.join(hive.home, 'logs', `${spare.worker_id}.log`), 'utf8');
  t.regex(log, /ready: /, "the worker's log is the spare's");

  const next = await bootedSpare(hive, 'llamacpp');
  t.not(next.worker_id, spare.worker_id, 'a fresh spare replaces the one taken');
});

test.serial('kill -9 the hive: its spare exits at once; a worker born of a spare is re-adopted by the next hive', async t => {
  t.timeout(5 * 60_000);
  const home = tempHome('rbee-spare-');
  const port = await freePort();
  const first = await hiveWith(t, {home, port});
  const warm = await postJson(`${first.url}/v1/workers`, await llamaSpawn());
  await readyWorker(first, warm.body.worker_id);
  const spare = await bootedSpare(first, 'llamacpp');
  const born = await postJson(`${first.url}/v1/workers`, await llamaSpawn());
  t.is(born.body.worker_id, spare.worker_id);
  const worker = await readyWorker(first, spare.worker_id);
  const unassigned = await bootedSpare(first, 'llamacpp');

  first.child.kill('SIGKILL');
  await first.stop();
  // Its stdin was the hive's pipe: the kernel closed it with the hive.
  await waitFor(() => !isAlive(unassigned.pid), 10_000, 'the unassigned spare to exit with its hive');
  t.true(isAlive(worker.pid!), 'the worker it became outlives the hive for a while, as any worker does');

  const second = await hiveWith(t, {home, port});
  const adopted = WorkerInfoSchema.parse((await getJson(`${second.url}/v1/workers/${worker.worker_id}`)).body);
  t.is(adopted.pid, worker.pid, 're-adopted by the id in its command line');
  t.true(adopted.adopted);
  await waitFor(async () => (await getJson(`${second.url}/v1/workers/${worker.worker_id}`)).body.state === 'ready', 10_000, 'its heartbeat');
  t.is(await second.stop(), 0);
  t.false(isAlive(worker.pid!), 'stopped with the hive that adopted it');
});

test.serial("a catalogue's types get spares at start, and a stopped hive leaves none", async t => {
  t.timeout(2 * 60_000);
  const hive = await hiveWith(t, {config: {models: {gemma: {model: await defaultModelPath(), type: 'llamacpp', device: 'cpu', contextSize: 512, threads: 1}}}});
  const spare = await bootedSpare(hive, 'llamacpp');
  t.is(await hive.stop(), 0);
  t.false(isAlive(spare.pid));
  t.deepEqual(processesMentioning(spare.worker_id), []);
  t.false(fs.existsSync(path.join(hive.home, 'logs', `${spare.worker_id}.log`)), "an unused spare's log goes with it");
});

test.serial('hive.spareWorkers false: no spare is kept', async t => {
  t.timeout(2 * 60_000);
  const hive = await hiveWith(t, {
    config: {hive: {spareWorkers: false}, models: {gemma: {model: await defaultModelPath(), type: 'llamacpp', device: 'cpu', contextSize: 512, threads: 1}}},
  });
  const answer = await postJson(`${hive.url}/v1/infer`, {model: 'gemma', prompt: 'Hello', max_tokens: 2, temperature: 0});
  t.is(answer.status, 200, JSON.stringify(answer.body));
  t.deepEqual(await spares(hive), []);
  t.deepEqual(processesMentioning(path.join(hive.home, 'logs')), [], 'and no spare process runs');
});

/** A spare started by hand, its stdin a pipe this test holds (as its hive would). */
function spareByHand(home: string, id: string) {
  const child = spawn(process.execPath, [rbeeBin, 'worker', 'spare', '--worker-id', id, '--type', 'llamacpp', '--hive-logs', path.join(home, 'logs')], {
    stdio: ['pipe', 'ignore', 'pipe'],
    detached: true,
  });
  let stderr = '';
  child.stderr.on('data', chunk => {
    stderr += String(chunk);
  });
  const exited = new Promise<{code: number | null; signal: NodeJS.Signals | null}>(resolve => child.once('exit', (code, signal) => resolve({code, signal})));
  return {child, exited, stderr: () => stderr};
}

test.serial('a restarted hive kills a stray spare of its own and no other', async t => {
  t.timeout(2 * 60_000);
  const home = tempHome('rbee-spare-');
  fs.mkdirSync(path.join(home, 'logs'), {recursive: true, mode: 0o700});
  const stray = spareByHand(home, 'worker-stray001');
  const foreign = spareByHand(tempHome('rbee-spare-other-'), 'worker-other001');
  t.teardown(() => {
    for (const spare of [stray, foreign]) {
      try {
        process.kill(-spare.child.pid!, 'SIGKILL');
      } catch {
        // Already gone, as it should be.
      }
    }
  });
  await hiveWith(t, {home});
  t.is((await stray.exited).signal, 'SIGKILL', 'killed');
  t.true(isAlive(foreign.child.pid!), "another hive's spare is left alone");
  foreign.child.stdin.end();
  t.is((await foreign.exited).code, 0, 'its pipe closed: it exits on its own');
});

test.serial('a spare checks its assignment: another worker id is refused; bad flags too', async t => {
  t.timeout(60_000);
  const home = tempHome('rbee-spare-');
  const spare = spareByHand(home, 'worker-check001');
  spare.child.stdin.end(`${JSON.stringify({args: ['worker', 'run', '--worker-id', 'worker-else0001', '--type', 'llamacpp'], env: {}})}\n`);
  t.is((await spare.exited).code, 2);
  t.regex(spare.stderr(), /expected `worker run --worker-id worker-check001 --type llamacpp/);

  const bad = spawn(process.execPath, [rbeeBin, 'worker', 'spare', '--worker-id', 'not-a-worker', '--type', 'llamacpp', '--hive-logs', home], {
    stdio: ['pipe', 'ignore', 'pipe'],
  });
  let stderr = '';
  bad.stderr.on('data', chunk => {
    stderr += String(chunk);
  });
  const code = await new Promise<number | null>(resolve => bad.once('exit', resolve));
  t.is(code, 2);
  t.regex(stderr, /worker-id/);
});
