/**
 * The first real request, with real processes and the real model: CLI -> hive -> llama.cpp
 * worker -> tokens, then a clean stop that leaves no process behind.
 */
import test from 'ava';
import {
  HeartbeatSchema,
  InferResponseSchema,
  ChatCompletionSchema,
  ChatCompletionChunkSchema,
  WorkerInfoSchema,
  InferStreamEventSchema,
} from '../../src/protocol/wire.js';
import {descendants, isAlive, processesMentioning, waitFor} from '../helpers/process-tree.js';
import {getJson, postJson, postStream, rbee, startHive, workerAuth, type RunningHive} from '../helpers/rbee-process.js';
import {defaultModelPath} from '../helpers/test-model.js';

let hive: RunningHive;
let modelPath: string;

test.before(async () => {
  modelPath = await defaultModelPath();
  hive = await startHive({args: ['--heartbeat-interval', '400']});
});

test.after.always(async () => {
  await hive?.stop();
});

const greedy = {max_tokens: 16, temperature: 0, seed: 42};

test.serial('spawn -> ready -> heartbeats -> infer (direct and through the hive) -> stop, no process left', async t => {
  const spawned = await rbee(
    ['--json', 'worker', 'spawn', '--model', modelPath, '--threads', '1', '--parallel', '2', '--context-size', '1024', '--wait', '--timeout', '120'],
    {hive},
  );
  t.is(spawned.exitCode, 0, String(spawned.stderr));
  const worker = WorkerInfoSchema.parse(JSON.parse(String(spawned.stdout)));
  t.is(worker.state, 'ready');
  t.is(worker.model, 'gemma-3-270m-q4_k_m');
  t.true(worker.pid !== null && isAlive(worker.pid));

  // The hive has seen a heartbeat with the spec's standard fields, with real numbers.
  const seen = (await getJson(`${hive.url}/v1/workers/${worker.worker_id}`)).body;
  const heartbeat = HeartbeatSchema.parse(seen.last_heartbeat);
  t.is(heartbeat.worker_id, worker.worker_id);
  t.is(heartbeat.status, 'ready');
  t.is(heartbeat.model, 'gemma-3-270m-q4_k_m');
  t.is(heartbeat.device, 'cpu');
  for (const field of ['vram_used', 'vram_total', 'requests_total', 'tokens_generated', 'uptime_seconds', 'ram_used'] as const) {
    t.is(typeof heartbeat[field], 'number', field);
  }
  t.true((heartbeat.ram_used ?? 0) > 100 * 1024 * 1024, 'the model is in memory');

  // /v1/infer directly on the worker and through the hive; greedy decoding repeats itself.
  // The worker's own port opens only with the key the hive holds.
  t.is((await postJson(`${worker.url}/v1/infer`, {prompt: 'x'})).status, 401);
  const workerKey = await workerAuth(hive.url, worker.worker_id);
  const direct = await postJson(`${worker.url}/v1/infer`, {prompt: 'The capital of France is', ...greedy}, {headers: workerKey});
  t.is(direct.status, 200, JSON.stringify(direct.body));
  const directAnswer = InferResponseSchema.parse(direct.body);
  t.true(directAnswer.text.length > 0);
  t.true(directAnswer.tokens_generated > 0 && directAnswer.tokens_generated <= 16);
  const routed = await postJson(`${hive.url}/v1/infer`, {prompt: 'The capital of France is', model: 'gemma-3-270m-q4_k_m', ...greedy});
  t.is(routed.status, 200);
  t.is(InferResponseSchema.parse(routed.body).text, directAnswer.text, 'same seed, greedy: same text');

  // Streamed /v1/infer through the hive: token events then one done event with the same text.
  const streamed = await postStream(`${hive.url}/v1/infer`, {prompt: 'The capital of France is', stream: true, ...greedy});
  t.is(streamed.status, 200);
  const events = streamed.events.map(data => InferStreamEventSchema.parse(JSON.parse(data)));
  const tokens = events.filter(event => event.type === 'token').map(event => (event.type === 'token' ? event.text : ''));
  const done = events.at(-1);
  t.is(done?.type, 'done');
  t.true(tokens.length > 1, 'more than one token event');
  t.is(tokens.join(''), directAnswer.text);

  // OpenAI chat completions, plain and streamed, direct and through the hive.
  const messages = [{role: 'user', content: 'Say hello in one word.'}];
  for (const [base, headers] of [
    [worker.url, workerKey],
    [hive.url, {}],
  ] as const) {
    const chat = await postJson(`${base}/v1/chat/completions`, {model: 'gemma-3-270m-q4_k_m', messages, ...greedy}, {headers});
    t.is(chat.status, 200, JSON.stringify(chat.body));
    const completion = ChatCompletionSchema.parse(chat.body);
    t.true(completion.choices[0]!.message.content.length > 0);
    t.true(completion.usage.completion_tokens > 0);
    const chatStream = await postStream(`${base}/v1/chat/completions`, {model: 'gemma-3-270m-q4_k_m', messages, stream: true, ...greedy}, headers);
    t.is(chatStream.events.at(-1), '[DONE]');
    const chunks = chatStream.events.slice(0, -1).map(data => ChatCompletionChunkSchema.parse(JSON.parse(data)));
    const streamedText = chunks.map(chunk => chunk.choices[0]?.delta.content ?? '').join('');
    t.is(streamedText, completion.choices[0]!.message.content, 'streamed chat equals plain chat');
    t.truthy(chunks.at(-1)?.choices[0]?.finish_reason);
  }

  // OpenAI text completions and the model list.
  const textCompletion = await postJson(`${hive.url}/v1/completions`, {model: 'gemma-3-270m-q4_k_m', prompt: 'The capital of France is', ...greedy});
  t.is(textCompletion.body.choices[0].text, directAnswer.text);
  const models = await getJson(`${hive.url}/v1/models`);
  t.deepEqual(
    models.body.data.map((model: {id: string}) => model.id),
    ['gemma-3-270m-q4_k_m'],
  );

  // `rbee infer` streams the tokens to the terminal.
  const cli = await rbee(['infer', '--max-tokens', '16', '--temperature', '0', '--seed', '42', 'The capital of France is'], {hive});
  t.is(cli.exitCode, 0, String(cli.stderr));
  t.is(String(cli.stdout).trim(), directAnswer.text.trim());

  // The counters in the next heartbeat are real.
  await waitFor(
    async () => {
      const latest = (await getJson(`${hive.url}/v1/workers/${worker.worker_id}`)).body.last_heartbeat;
      return latest.requests_total >= 9 && latest.tokens_generated > 0;
    },
    5_000,
    'a heartbeat counting the requests',
  );

  const list = await rbee(['--json', 'worker', 'list'], {hive});
  t.is(JSON.parse(String(list.stdout)).workers.length, 1);

  // Stop: the worker and everything under it are gone (the hive's spare worker process, its other child, stays).
  t.true(descendants(hive.pid).includes(worker.pid!));
  const treeBefore = [worker.pid!, ...descendants(worker.pid!)];
  const stopped = await rbee(['--json', 'worker', 'stop', worker.worker_id], {hive});
  t.is(stopped.exitCode, 0, String(stopped.stderr));
  t.is(JSON.parse(String(stopped.stdout)).state, 'stopped');
  await waitFor(() => treeBefore.every(pid => !isAlive(pid)), 5_000, 'the worker tree to exit');
  t.deepEqual(processesMentioning(worker.worker_id), []);
});

test.serial('stopping the hive stops its workers', async t => {
  const otherHive = await startHive({args: ['--heartbeat-interval', '400']});
  try {
    const spawned = await rbee(['--json', 'worker', 'spawn', '--model', modelPath, '--threads', '1', '--context-size', '512', '--parallel', '1', '--wait'], {
      hive: otherHive,
    });
    t.is(spawned.exitCode, 0, String(spawned.stderr));
    const worker = JSON.parse(String(spawned.stdout)) as {pid: number; worker_id: string};
    t.is(await otherHive.stop('SIGTERM'), 0);
    t.false(isAlive(worker.pid));
    t.deepEqual(processesMentioning(worker.worker_id), []);
  } finally {
    await otherHive.stop();
  }
});
