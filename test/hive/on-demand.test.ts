/**
 * Models on demand with real workers: catalogue names in a config file, a hive that starts a model
 * for the first request that names it, keeps within maxLoadedModels by stopping idle ones, stops
 * idle ones after their timeout, and refuses what cannot fit with the figures.
 */
import fs from 'node:fs';
import path from 'node:path';
import test, {type ExecutionContext} from 'ava';
import {HiveClient} from '../../src/protocol/hive-client.js';
import {CatalogueListSchema, type AutoscaleEvent} from '../../src/protocol/wire.js';
import {waitFor} from '../helpers/process-tree.js';
import {getJson, postJson, rbee, startHive, streamToFirstToken, tempHome, type RunningHive} from '../helpers/rbee-process.js';
import {defaultModelPath} from '../helpers/test-model.js';
import {writeTinyGguf} from '../native/tiny-gguf.js';

async function hiveWith(t: ExecutionContext, config: unknown): Promise<RunningHive> {
  const home = tempHome('rbee-on-demand-');
  const file = path.join(home, 'rbee.config.json');
  fs.writeFileSync(file, JSON.stringify(config), {mode: 0o600});
  const hive = await startHive({home, args: ['--heartbeat-interval', '1000'], env: {RBEE_CONFIG: file}});
  t.teardown(async () => {
    await hive.stop();
  });
  return hive;
}

async function catalogue(hive: RunningHive) {
  return CatalogueListSchema.parse((await getJson(`${hive.url}/v1/catalogue`)).body);
}

async function stateOf(hive: RunningHive, name: string) {
  return (await catalogue(hive)).models.find(entry => entry.name === name)!;
}

const infer = (hive: RunningHive, model: string, extra: Record<string, unknown> = {}) =>
  postJson(`${hive.url}/v1/infer`, {model, prompt: 'The capital of France is', max_tokens: 4, temperature: 0, ...extra});

test('a cold model: twenty requests start it once, wait for it, and all are answered; OpenAI clients see its name', async t => {
  t.timeout(5 * 60_000);
  const hive = await hiveWith(t, {models: {gemma: {model: await defaultModelPath(), device: 'cpu', contextSize: 512, parallel: 4, threads: 1}}});
  const listed = await getJson(`${hive.url}/v1/models`);
  t.deepEqual(
    listed.body.data.map((entry: {id: string}) => entry.id),
    ['gemma'],
    'listed before anything runs',
  );
  t.is((await stateOf(hive, 'gemma')).state, 'cold');

  const answers = await Promise.all(Array.from({length: 20}, () => infer(hive, 'gemma')));
  t.deepEqual(
    answers.map(answer => answer.status),
    Array.from({length: 20}, () => 200),
  );
  const workers = (await getJson(`${hive.url}/v1/workers`)).body.workers as {worker_id: string}[];
  t.is(workers.length, 1, 'one start for twenty requests');
  const entry = await stateOf(hive, 'gemma');
  t.like(entry, {state: 'ready', worker_id: workers[0]!.worker_id});
  const metrics = String((await fetch(`${hive.url}/metrics`).then(response => response.text())) ?? '');
  t.regex(metrics, /rbee_model_starts_total\{reason="request"\} 1/);
  t.regex(metrics, /rbee_request_wait_for_model_seconds_count 20/);

  const chat = await postJson(`${hive.url}/v1/chat/completions`, {model: 'gemma', messages: [{role: 'user', content: 'Hi'}], max_tokens: 2});
  t.is(chat.status, 200);
  const cli = await rbee(['--json', 'models'], {hive});
  t.is(cli.exitCode, 0);
  t.like(JSON.parse(String(cli.stdout)).models[0], {name: 'gemma', state: 'ready'});
  t.like(JSON.parse(String(cli.stdout)).decisions[0], {action: 'started-for-request', model: 'gemma'});
});

test('maxLoadedModels 1, two models alternating: each request answered, a stream never cut, only idle models stopped', async t => {
  t.timeout(8 * 60_000);
  const hive = await hiveWith(t, {
    hive: {maxLoadedModels: 1},
    models: {
      gemma: {model: await defaultModelPath(), device: 'cpu', contextSize: 512, threads: 1},
      tiny: {model: writeTinyGguf('llama'), device: 'cpu', contextSize: 256, threads: 1},
    },
  });
  // The decisions as a client of /v1/events sees them (what the dashboard and `rbee status` follow).
  const following = new AbortController();
  const streamed: AutoscaleEvent[] = [];
  let connected = false;
  const follower = (async () => {
    try {
      for await (const event of new HiveClient({url: hive.url}).events({signal: following.signal})) {
        connected ||= event.type === 'snapshot';
        if (event.type === 'autoscale') {
          streamed.push(event);
        }
      }
    } catch (error) {
      if (!following.signal.aborted) {
        throw error;
      }
    }
  })();
  await waitFor(() => connected, 10_000, "the event stream's snapshot");
  t.is((await infer(hive, 'gemma')).status, 200);
  // A long stream on gemma while tiny is asked for: tiny waits for it; the stream ends whole.
  const stream = await streamToFirstToken(`${hive.url}/v1/infer`, {model: 'gemma', prompt: 'Count: 1, 2, 3,', max_tokens: 48, temperature: 0, stream: true});
  const tiny = infer(hive, 'tiny');
  t.regex((await stream.rest()).text, /"type":"done"/, 'the gemma stream finished although tiny waited for its room');
  t.is((await tiny).status, 200);
  for (const model of ['gemma', 'tiny', 'gemma']) {
    t.is((await infer(hive, model)).status, 200, model);
    const alive = ((await getJson(`${hive.url}/v1/workers`)).body.workers as {state: string; model: string}[]).filter(
      worker => worker.state !== 'stopped' && worker.state !== 'failed',
    );
    t.is(alive.length, 1, `only ${model} is loaded`);
  }
  const {decisions} = await catalogue(hive);
  const evictions = decisions.filter((event: AutoscaleEvent) => event.action === 'evicted-for');
  t.true(evictions.length >= 4, `an eviction per switch (${evictions.length})`);
  t.true(evictions.every(event => event.reason.startsWith('stopped to make room for')));
  // Every decision reached the event stream too, in order, and /metrics counts the evictions.
  await waitFor(() => streamed.length >= decisions.length, 10_000, 'the event stream to catch up');
  following.abort();
  await follower;
  t.deepEqual(
    streamed.map(event => [event.action, event.model]),
    decisions.map(event => [event.action, event.model]),
  );
  const metrics = await fetch(`${hive.url}/metrics`).then(response => response.text());
  t.regex(metrics, new RegExp(`rbee_model_evictions_total ${evictions.length}\\b`));
  t.regex(metrics, /rbee_model_starts_total\{reason="request"\} \d+/);
});

test('idle timeout: the model is stopped after it, and the next request starts it again', async t => {
  t.timeout(5 * 60_000);
  const hive = await hiveWith(t, {hive: {idleTimeout: '2s'}, models: {tiny: {model: writeTinyGguf('qwen2'), device: 'cpu', contextSize: 256, threads: 1}}});
  t.is((await infer(hive, 'tiny')).status, 200);
  const first = (await stateOf(hive, 'tiny')).worker_id;
  await waitFor(async () => (await stateOf(hive, 'tiny')).state === 'cold', 60_000, 'the idle stop');
  const {decisions} = await catalogue(hive);
  t.like(decisions.at(-1), {action: 'stopped-idle', model: 'tiny', worker_id: first});
  // `rbee status` says what is cold and why.
  const status = await rbee(['status'], {hive});
  t.is(status.exitCode, 0, String(status.stderr));
  t.regex(String(status.stdout), /catalogue: tiny cold/);
  t.regex(String(status.stdout), new RegExp(`recent decisions:\\n(  .*\\n)*  \\S+ stopped-idle tiny \\(${first}\\) on cpu: .*idle`));
  // The next request, from the CLI: `rbee infer --model` on the cold name waits for its start.
  const cli = await rbee(['--json', 'infer', '--model', 'tiny', '--max-tokens', '4', '--temperature', '0', '--no-stream', 'Hello'], {hive, timeout: 120_000});
  t.is(cli.exitCode, 0, String(cli.stderr));
  t.like(JSON.parse(String(cli.stdout)), {tokens_generated: 4});
  t.not((await stateOf(hive, 'tiny')).worker_id, first);
  t.like((await catalogue(hive)).decisions.at(-1), {action: 'started-for-request', model: 'tiny'});
});

test('a group entry: the first request starts a worker group, its idle timeout stops the whole group', async t => {
  t.timeout(5 * 60_000);
  const hive = await hiveWith(t, {
    models: {
      pair: {model: await defaultModelPath(), type: 'llamacpp', group: {devices: ['cpu', 'cpu']}, contextSize: 512, threads: 1, idleTimeout: '3s'},
    },
  });
  t.like(await stateOf(hive, 'pair'), {state: 'cold', device: 'cpu,cpu'});
  const answers = await Promise.all([infer(hive, 'pair'), infer(hive, 'pair')]);
  t.deepEqual(
    answers.map(answer => answer.status),
    [200, 200],
  );
  type GroupView = {group_id: string; health: string; coordinator: {worker_id: string}};
  const groups = async () => (await getJson(`${hive.url}/v1/groups`)).body.groups as GroupView[];
  t.is((await groups()).length, 1, 'one group for both requests');
  // The coordinator answers once its shards serve; the hive reads the group healthy when each
  // shard's heartbeat has said so, which on a loaded machine can come a beat after the answers.
  await waitFor(async () => (await groups())[0]?.health === 'healthy', 30_000, 'the group to read healthy');
  const group = (await groups())[0]!;
  t.is((await stateOf(hive, 'pair')).worker_id, group.coordinator.worker_id);
  t.like((await catalogue(hive)).decisions[0], {action: 'started-for-request', model: 'pair', device: 'cpu,cpu'});

  await waitFor(async () => (await stateOf(hive, 'pair')).state === 'cold', 60_000, 'the idle stop');
  const ended = (await getJson(`${hive.url}/v1/groups?all=1`)).body.groups as {group_id: string; health: string}[];
  t.like(
    ended.find(candidate => candidate.group_id === group.group_id),
    {health: 'stopped'},
  );
  const running = async () => ((await getJson(`${hive.url}/v1/workers`)).body.workers as {state: string}[]).filter(worker => worker.state !== 'stopped');
  await waitFor(async () => (await running()).length === 0, 60_000, 'every member of the group to stop');
  t.like((await catalogue(hive)).decisions.at(-1), {action: 'stopped-idle', model: 'pair'});
});

test('a model that cannot fit: 503 naming the device and the figures; nothing started', async t => {
  const hive = await hiveWith(t, {models: {huge: {model: writeTinyGguf('llama'), device: 'cpu', contextSize: 1_048_576, parallel: 64}}});
  const answer = await infer(hive, 'huge');
  t.is(answer.status, 503);
  t.regex(answer.body.error.message, /cannot start model "huge" on cpu: cpu has [\d.]+ GiB free and needs [\d.]+ GiB plus [\d.]+ GiB headroom/);
  t.is((await getJson(`${hive.url}/v1/workers`)).body.workers.length, 0);
  t.like((await catalogue(hive)).decisions.at(-1), {action: 'refused-for', model: 'huge', device: 'cpu'});
});

test('config errors name the key: unknown type, bad duration, names that differ only in case', async t => {
  const home = tempHome('rbee-on-demand-config-');
  const cases: [unknown, RegExp][] = [
    [{models: {a: {model: 'default', type: 'nope'}}}, /`models\.a\.type`: unknown worker type "nope"/],
    [{models: {a: {model: 'default', idleTimeout: 'soon'}}}, /`models\.a\.idleTimeout`: expected a duration/],
    [{hive: {idleTimeout: '5 weeks'}}, /`hive\.idleTimeout`: expected a duration/],
    [{models: {Gemma: {model: 'default'}, gemma: {model: 'default'}}}, /`models\.gemma`: duplicate model name/],
    [{models: {g: {model: 'default', device: 'cpu', group: {devices: ['cpu', 'cpu']}}}}, /`models\.g\.device`: a group entry runs on group\.devices/],
    [{models: {g: {model: 'default', group: {devices: ['cpu']}}}}, /`models\.g\.group\.devices`/],
  ];
  for (const [config, message] of cases) {
    const file = path.join(home, 'rbee.config.json');
    fs.writeFileSync(file, JSON.stringify(config), {mode: 0o600});
    const started = await rbee(['hive', 'start', '--port', '0'], {env: {RBEE_HOME: home, RBEE_CONFIG: file}, timeout: 60_000});
    t.not(started.exitCode, 0, JSON.stringify(config));
    t.regex(String(started.stderr), message);
  }
});

test("hand-spawned workers: stopped when idle only with --idle-timeout, and the decision is an event like the catalogue's", async t => {
  t.timeout(5 * 60_000);
  const hive = await hiveWith(t, {});
  const model = writeTinyGguf('qwen2');
  const spawn = async (extra: string[]) => {
    const cli = await rbee(['--json', 'worker', 'spawn', '--model', model, '--threads', '1', '--context-size', '256', '--wait', ...extra], {hive});
    t.is(cli.exitCode, 0, String(cli.stderr));
    return JSON.parse(String(cli.stdout)).worker_id as string;
  };
  const kept = await spawn([]);
  const idle = await spawn(['--idle-timeout', '2s']);
  const client = new HiveClient({url: hive.url});
  await waitFor(async () => (await client.getWorker(idle)).state === 'stopped', 60_000, 'the idle stop');
  t.regex((await client.getWorker(idle)).reason ?? '', /^idle: no request for \d+ s/);
  t.like((await catalogue(hive)).decisions.at(-1), {action: 'stopped-idle', worker_id: idle});
  // The one spawned without a timeout has been idle longer and is left alone.
  t.is((await client.getWorker(kept)).state, 'ready');
});
