/**
 * The built-in candle adapter (adapters/candle, written against the public plugin API) through
 * the hive: a worker of type `candle` loads the default model in process, answers rbee's and the
 * OpenAI API (plain and streamed), heartbeats memory figures, and stops.
 */
import path from 'node:path';
import test from 'ava';
import {HeartbeatSchema, InferResponseSchema} from '../../src/protocol/wire.js';
import {isAlive, waitFor} from '../helpers/process-tree.js';
import {getJson, postJson, postStream, rbee, startHive, tempHome, workerAuth, type RunningHive} from '../helpers/rbee-process.js';
import {defaultModelPath} from '../helpers/test-model.js';
import {nativeTest} from './native-helpers.js';

const {serial} = await nativeTest();
let hive: RunningHive | undefined;

test.after.always(async () => {
  await hive?.stop();
});

serial('a candle worker serves the default model through the hive: infer, stream, chat, heartbeat, stop', async t => {
  hive = await startHive({cwd: tempHome('rbee-candle-'), args: ['--heartbeat-interval', '300']});
  const adapters = (await getJson(`${hive.url}/v1/adapters`)).body as {adapters: Array<{type: string; built_in: boolean}>; errors: unknown[]};
  t.true(adapters.adapters.some(entry => entry.type === 'candle' && entry.built_in), JSON.stringify(adapters));

  const model = await defaultModelPath();
  const spawned = await rbee(['--json', 'worker', 'spawn', '--type', 'candle', '--model', model, '--threads', '2', '--context-size', '1024', '--restart', 'never', '--wait', '--timeout', '120'], {hive});
  t.is(spawned.exitCode, 0, String(spawned.stderr));
  const worker = JSON.parse(String(spawned.stdout)) as {worker_id: string; url: string; pid: number};

  const direct = await postJson(`${worker.url}/v1/infer`, {prompt: 'The capital of France is', max_tokens: 12, temperature: 0}, {headers: await workerAuth(hive.url, worker.worker_id)});
  t.is(direct.status, 200, JSON.stringify(direct.body));
  const answer = InferResponseSchema.parse(direct.body);
  t.is(answer.text, ' the capital of the country of France. It is the largest');

  const streamed = await postStream(`${hive.url}/v1/infer`, {prompt: 'The capital of France is', max_tokens: 6, temperature: 0, stream: true, model: path.basename(model)});
  const events = streamed.events.map(data => JSON.parse(data) as {type: string; text?: string});
  t.is(events.at(-1)?.type, 'done');
  t.true(events.filter(event => event.type === 'token').length >= 3, JSON.stringify(events));
  t.is(events.filter(event => event.type === 'token').map(event => event.text).join(''), ' the capital of the country of');

  const chat = await postJson(`${hive.url}/v1/chat/completions`, {model: path.basename(model), messages: [{role: 'user', content: 'Hello'}], max_tokens: 8, temperature: 0});
  t.is(chat.status, 200, JSON.stringify(chat.body));
  t.is(typeof chat.body.choices[0].message.content, 'string');

  await waitFor(async () => (await getJson(`${hive!.url}/v1/workers/${worker.worker_id}`)).body.last_heartbeat?.requests_total === 3, 10_000, 'a heartbeat after the requests');
  const heartbeat = HeartbeatSchema.parse((await getJson(`${hive.url}/v1/workers/${worker.worker_id}`)).body.last_heartbeat);
  t.is(heartbeat.adapter_type, 'candle');
  t.is(heartbeat.backend, 'cpu');
  t.true((heartbeat.ram_used ?? 0) > 200_000_000, `ram_used ${heartbeat.ram_used}`);

  const stopped = await rbee(['--json', 'worker', 'stop', worker.worker_id], {hive});
  t.is(JSON.parse(String(stopped.stdout)).state, 'stopped');
  await waitFor(() => !isAlive(worker.pid), 10_000, 'the worker to exit');
});
