/**
 * The llamacpp adapter with engine "llama-server": a real llama-server (built by
 * `rbee engines install llama.cpp` from node-llama-cpp's bundled source) behind a worker.
 */
import fs from 'node:fs';
import path from 'node:path';
import test from 'ava';
import {findLlamaCpp} from '../../src/engines/llama-cpp-build.js';
import {HeartbeatSchema, InferResponseSchema, InferStreamEventSchema} from '../../src/protocol/wire.js';
import {descendants, isAlive, waitFor} from '../helpers/process-tree.js';
import {getJson, postJson, postStream, rbee, startHive, tempHome, workerAuth, type RunningHive} from '../helpers/rbee-process.js';
import {defaultModelPath} from '../helpers/test-model.js';

const installed = findLlamaCpp();
// In CI the engine is built before the tests: there a missing llama-server is a failure, not a skip.
const serial = installed === null && process.env.CI !== 'true' ? test.serial.skip : test.serial;
let hive: RunningHive | undefined;

test.after.always(async () => {
  await hive?.stop();
});

async function workerInfo(id: string) {
  return (await getJson(`${hive!.url}/v1/workers/${id}`)).body;
}

serial('llama-server behind the adapter: ready, infer plain and streamed, heartbeat from the server, engine death seen by the hive', async t => {
  t.not(installed, null, 'llama-server is built (rbee engines install llama.cpp)');
  const project = tempHome('rbee-llama-server-');
  fs.writeFileSync(path.join(project, 'rbee.config.json'), JSON.stringify({types: {llamacpp: {engine: 'llama-server'}}}));
  hive = await startHive({cwd: project, args: ['--heartbeat-interval', '300']});
  const model = await defaultModelPath();
  const spawned = await rbee(
    [
      '--json',
      'worker',
      'spawn',
      '--model',
      model,
      '--threads',
      '1',
      '--parallel',
      '2',
      '--context-size',
      '1024',
      '--restart',
      'never',
      '--wait',
      '--timeout',
      '120',
    ],
    {hive},
  );
  t.is(spawned.exitCode, 0, String(spawned.stderr));
  const worker = JSON.parse(String(spawned.stdout)) as {worker_id: string; url: string; pid: number; model: string};
  const [server] = descendants(worker.pid).filter(pid => fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes('llama-server'));
  t.truthy(server, 'the worker runs a llama-server child');
  // llama-server binds loopback with a key from its environment (LLAMA_API_KEY), never on its command line.
  const argv = fs.readFileSync(`/proc/${server}/cmdline`, 'utf8').split('\0');
  const engineKey = fs
    .readFileSync(`/proc/${server}/environ`, 'utf8')
    .split('\0')
    .find(entry => entry.startsWith('LLAMA_API_KEY='))
    ?.slice('LLAMA_API_KEY='.length);
  t.truthy(engineKey);
  t.false(argv.some(arg => arg.includes(engineKey!)));
  t.is(argv[argv.indexOf('--host') + 1], '127.0.0.1');
  const engineUrl = `http://127.0.0.1:${argv[argv.indexOf('--port') + 1]}`;
  t.is((await postJson(`${engineUrl}/completion`, {prompt: 'x', n_predict: 1})).status, 401, 'no generation without the key');
  t.is((await getJson(`${engineUrl}/slots`, {authorization: `Bearer ${engineKey}`})).status, 200);

  const greedy = {prompt: 'The capital of France is', max_tokens: 12, temperature: 0, seed: 3};
  const direct = InferResponseSchema.parse((await postJson(`${worker.url}/v1/infer`, greedy, {headers: await workerAuth(hive.url, worker.worker_id)})).body);
  t.true(direct.text.length > 0);
  t.is(direct.tokens_generated, 12);
  t.true(direct.prompt_tokens > 0);
  const routed = InferResponseSchema.parse((await postJson(`${hive.url}/v1/infer`, {...greedy, model: worker.model})).body);
  t.is(routed.text, direct.text, 'greedy decoding repeats itself');
  const streamed = await postStream(`${hive.url}/v1/infer`, {...greedy, stream: true});
  const events = streamed.events.map(data => InferStreamEventSchema.parse(JSON.parse(data)));
  t.is(
    events
      .filter(event => event.type === 'token')
      .map(event => (event.type === 'token' ? event.text : ''))
      .join(''),
    direct.text,
  );
  t.is(events.at(-1)?.type, 'done');
  const chat = await postJson(`${hive.url}/v1/chat/completions`, {
    model: worker.model,
    messages: [{role: 'user', content: 'Say hi.'}],
    max_tokens: 8,
    temperature: 0,
  });
  t.is(chat.status, 200, JSON.stringify(chat.body));
  t.true(chat.body.choices[0].message.content.length > 0);
  t.true(chat.body.usage.completion_tokens > 0);

  await waitFor(async () => (await workerInfo(worker.worker_id)).last_heartbeat?.requests_total === 4, 5_000, 'a heartbeat after the requests');
  const heartbeat = HeartbeatSchema.parse((await workerInfo(worker.worker_id)).last_heartbeat);
  t.is(heartbeat.adapter_type, 'llama.cpp');
  t.true((heartbeat.ram_used ?? 0) > 100 * 1024 * 1024, "llama-server's own resident memory");
  t.is(heartbeat.batch_size, 0, 'from /slots: nothing processing now');

  process.kill(server!, 'SIGKILL');
  await waitFor(async () => (await workerInfo(worker.worker_id)).state === 'failed', 10_000, 'the hive to see the engine die');
  t.regex((await workerInfo(worker.worker_id)).reason ?? '', /llama-server \(pid \d+\) (was killed by SIGKILL|exited)/);
  await waitFor(() => !isAlive(worker.pid), 5_000, 'the worker to be gone');
});

serial('stopping a llama-server worker leaves no process', async t => {
  const model = await defaultModelPath();
  const spawned = await rbee(
    ['--json', 'worker', 'spawn', '--model', model, '--threads', '1', '--parallel', '1', '--context-size', '512', '--wait', '--timeout', '120'],
    {hive},
  );
  t.is(spawned.exitCode, 0, String(spawned.stderr));
  const worker = JSON.parse(String(spawned.stdout)) as {worker_id: string; pid: number};
  const tree = [worker.pid, ...descendants(worker.pid)];
  t.true(tree.length >= 2);
  const stopped = await rbee(['--json', 'worker', 'stop', worker.worker_id], {hive});
  t.is(JSON.parse(String(stopped.stdout)).state, 'stopped');
  await waitFor(() => tree.every(pid => !isAlive(pid)), 5_000, 'the worker and llama-server to exit');
  t.pass();
});
