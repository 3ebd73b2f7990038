/**
 * The plugin path end to end: a third-party adapter (test/fixtures/adapter-echo, its own package)
 * is added with `rbee adapter add`, spawned with --type, answers, heartbeats and stops, engine
 * included; bad plugins each fail with an error naming them while the hive keeps running.
 */
import fs from 'node:fs';
import path from 'node:path';
import {fileURLToPath} from 'node:url';
import test from 'ava';
import {HeartbeatSchema, InferResponseSchema} from '../../src/protocol/wire.js';
import {isAlive, processesMentioning, waitFor} from '../helpers/process-tree.js';
import {getJson, postJson, postStream, rbee, startHive, tempHome, workerAuth, type RunningHive} from '../helpers/rbee-process.js';
import {defaultModelPath} from '../helpers/test-model.js';

const fixtures = fileURLToPath(new URL('../fixtures/', import.meta.url));
const project = tempHome('rbee-plugin-project-');
fs.cpSync(path.join(fixtures, 'adapter-echo'), path.join(project, 'plugins', 'adapter-echo'), {recursive: true});
fs.cpSync(path.join(fixtures, 'bad-adapters'), path.join(project, 'bad'), {recursive: true});
fs.cpSync(path.join(fixtures, 'adapter-ts'), path.join(project, 'ts'), {recursive: true});
// `adapter add` with no config from the project up writes the home's, which a hive reads when it finds none.
const home = tempHome('rbee-plugin-home-');
const homeConfig = path.join(home, 'rbee.config.json');
const inHome = {env: {RBEE_HOME: home}};
let hive: RunningHive | undefined;

test.after.always(async () => {
  await hive?.stop();
});

test.serial(
  "rbee adapter add validates the plugin and records it where the hive will read it (the home's config); a repeat says already added; list shows where each came from",
  async t => {
    const echoPath = path.join(project, 'plugins', 'adapter-echo');
    const added = await rbee(['--json', 'adapter', 'add', './plugins/adapter-echo'], {cwd: project, ...inHome});
    t.is(added.exitCode, 0, String(added.stderr));
    t.like(JSON.parse(String(added.stdout)), {name: 'acme:echo', type: 'echo', source: echoPath, config: homeConfig, already_added: false});
    t.deepEqual(JSON.parse(fs.readFileSync(homeConfig, 'utf8')), {adapters: [echoPath]});
    t.is(fs.statSync(homeConfig).mode & 0o777, 0o600);

    const again = await rbee(['adapter', 'add', echoPath], {cwd: project, ...inHome});
    t.is(again.exitCode, 0, String(again.stderr));
    t.regex(String(again.stdout), /acme:echo \(worker type "echo"\) is already added in /);
    t.deepEqual(JSON.parse(fs.readFileSync(homeConfig, 'utf8')), {adapters: [echoPath]}, 'no duplicate');

    const listed = await rbee(['--json', 'adapter', 'list'], {cwd: project, ...inHome});
    const list = JSON.parse(String(listed.stdout)) as {
      config: string;
      adapters: Array<{type: string; source: string; built_in: boolean; backends: Record<string, unknown>}>;
    };
    t.is(list.config, homeConfig);
    t.deepEqual(
      list.adapters.map(entry => [entry.type, entry.source, entry.built_in]),
      [
        ['llamacpp', 'built-in llamacpp', true],
        ['candle', 'built-in candle', true],
        ['vllm', 'built-in vllm', true],
        ['tensorrt-llm', 'built-in tensorrt-llm', true],
        ['ollama', 'built-in ollama', true],
        ['comfyui', 'built-in comfyui', true],
        ['echo', echoPath, false],
      ],
    );
    const backends = Object.fromEntries(list.adapters.map(entry => [entry.type, Object.keys(entry.backends)]));
    t.like(
      backends,
      {llamacpp: ['cpu', 'cuda', 'metal'], 'tensorrt-llm': ['cuda'], comfyui: ['cpu', 'cuda'], echo: ['cpu', 'cuda', 'metal']},
      'where each runs, as declared (echo declares nothing: anywhere)',
    );
  },
);

test.serial('rbee adapter add takes a .ts file as it is (no build), relative to the project config it finds', async t => {
  const other = tempHome('rbee-plugin-ts-');
  fs.cpSync(path.join(project, 'ts'), path.join(other, 'ts'), {recursive: true});
  fs.writeFileSync(path.join(other, 'rbee.config.json'), '{}');
  const added = await rbee(['--json', 'adapter', 'add', './ts/shout.ts'], {cwd: other, ...inHome});
  t.is(added.exitCode, 0, String(added.stderr));
  t.like(JSON.parse(String(added.stdout)), {name: 'acme:shout', type: 'shout', source: './ts/shout.ts', config: path.join(other, 'rbee.config.json')});
  const listed = await rbee(['--json', 'adapter', 'list'], {cwd: other, ...inHome});
  const list = JSON.parse(String(listed.stdout)) as {adapters: Array<{type: string; description: string}>; errors: unknown[]};
  t.deepEqual(list.errors, []);
  t.like(list.adapters.at(-1), {type: 'shout', description: 'upper-cases the prompt (test fixture of a .ts plugin)'});
});

test.serial('bad plugins are refused by adapter add, naming the plugin, and the config is unchanged', async t => {
  const before = fs.readFileSync(homeConfig, 'utf8');
  const nothing = await rbee(['adapter', 'add', './bad/exports-nothing.js'], {cwd: project, ...inHome});
  t.not(nothing.exitCode, 0);
  t.regex(String(nothing.stderr), /adapter \/.*\/bad\/exports-nothing\.js exports nothing usable/);
  const shape = await rbee(['adapter', 'add', './bad/wrong-shape.js'], {cwd: project, ...inHome});
  t.not(shape.exitCode, 0);
  t.regex(String(shape.stderr), /invalid adapter from \/.*\/bad\/wrong-shape\.js: `name`: .*`infer`: expected a function/);
  const missing = await rbee(['adapter', 'add', './bad/no-such-file.js'], {cwd: project, ...inHome});
  t.is(missing.exitCode, 4);
  t.is(fs.readFileSync(homeConfig, 'utf8'), before);
});

test.serial('the plugin serves through the hive: spawn --type echo, infer, stream, heartbeat, stop with its engine', async t => {
  // The config also lists broken plugins: the hive starts anyway and says which failed.
  fs.writeFileSync(
    path.join(project, 'rbee.config.json'),
    JSON.stringify({
      adapters: ['./plugins/adapter-echo', './bad/exports-nothing.js', './bad/wrong-shape.js', './bad/throwing-start.js', './bad/never-ready.js'],
    }),
  );
  hive = await startHive({cwd: project, args: ['--heartbeat-interval', '300', '--load-stall-timeout', '2000']});
  const adapters = (await getJson(`${hive.url}/v1/adapters`)).body as {adapters: Array<{type: string}>; errors: Array<{source: string; message: string}>};
  t.deepEqual(
    adapters.adapters.map(entry => entry.type),
    ['llamacpp', 'candle', 'vllm', 'tensorrt-llm', 'ollama', 'comfyui', 'echo', 'throwing-start', 'never-ready'],
  );
  t.deepEqual(
    adapters.errors.map(error => error.source),
    ['./bad/exports-nothing.js', './bad/wrong-shape.js'],
  );
  t.regex(hive.stderr(), /adapter \.\/bad\/exports-nothing\.js not loaded/);

  const model = await defaultModelPath();
  const spawned = await rbee(['--json', 'worker', 'spawn', '--type', 'echo', '--model', model, '--wait', '--timeout', '60'], {hive});
  t.is(spawned.exitCode, 0, String(spawned.stderr));
  const worker = JSON.parse(String(spawned.stdout)) as {worker_id: string; url: string; pid: number};

  const direct = await postJson(`${worker.url}/v1/infer`, {prompt: 'bees make honey', max_tokens: 5}, {headers: await workerAuth(hive.url, worker.worker_id)});
  t.is(direct.status, 200, JSON.stringify(direct.body));
  t.is(InferResponseSchema.parse(direct.body).text, 'bees make honey bees make ');
  const streamed = await postStream(`${hive.url}/v1/infer`, {prompt: 'bees make honey', max_tokens: 3, stream: true, model: path.basename(model)});
  t.deepEqual(
    streamed.events.map(data => JSON.parse(data).type),
    ['token', 'token', 'token', 'done'],
  );
  const chat = await postJson(`${hive.url}/v1/chat/completions`, {
    model: path.basename(model),
    messages: [{role: 'user', content: 'hello there'}],
    max_tokens: 2,
  });
  t.is(chat.body.choices[0].message.content, 'hello there ');

  // Per-worker options reach the adapter's factory, and a bad one is refused by it before anything starts.
  const bad = await rbee(['--json', 'worker', 'spawn', '--type', 'echo', '--model', model, '--adapter-option', 'prefix=5'], {hive});
  t.is(bad.exitCode, 2);
  t.regex(JSON.parse(String(bad.stdout)).error.message, /adapter_options: .*option `prefix` of acme:echo must be a string, got number/);
  const prefixed = await rbee(
    ['--json', 'worker', 'spawn', '--type', 'echo', '--model', model, '--adapter-option', 'prefix=>> ', '--wait', '--timeout', '60'],
    {hive},
  );
  t.is(prefixed.exitCode, 0, String(prefixed.stderr));
  const prefixedWorker = JSON.parse(String(prefixed.stdout)) as {worker_id: string; url: string};
  const answer = await postJson(
    `${prefixedWorker.url}/v1/infer`,
    {prompt: 'bees make honey', max_tokens: 2},
    {headers: await workerAuth(hive.url, prefixedWorker.worker_id)},
  );
  t.is(InferResponseSchema.parse(answer.body).text, '>> bees make ');
  await rbee(['worker', 'stop', prefixedWorker.worker_id], {hive});

  await waitFor(
    async () => (await getJson(`${hive!.url}/v1/workers/${worker.worker_id}`)).body.last_heartbeat?.requests_total === 3,
    5_000,
    'a heartbeat after the requests',
  );
  const heartbeat = HeartbeatSchema.parse((await getJson(`${hive.url}/v1/workers/${worker.worker_id}`)).body.last_heartbeat);
  t.is(heartbeat.adapter_type, 'echo');
  t.deepEqual(heartbeat.loaded_models, ['echo']);
  t.true((heartbeat.ram_used ?? 0) > 0, 'memory from the plugin engine');

  const engines = processesMentioning('engine.js').filter(pid => fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes(worker.worker_id));
  t.is(engines.length, 1, 'the plugin started its engine process');
  const stopped = await rbee(['--json', 'worker', 'stop', worker.worker_id], {hive});
  t.is(JSON.parse(String(stopped.stdout)).state, 'stopped');
  await waitFor(() => !isAlive(engines[0]!) && !isAlive(worker.pid), 5_000, 'worker and engine to exit');
  t.deepEqual(processesMentioning(worker.worker_id), []);
});

test.serial('a plugin whose start throws, and one that never gets ready: each fails naming the plugin; the hive keeps serving', async t => {
  const model = await defaultModelPath();
  const throwing = await rbee(['--json', 'worker', 'spawn', '--type', 'throwing-start', '--restart', 'never', '--model', model, '--wait', '--timeout', '60'], {
    hive,
  });
  t.is(throwing.exitCode, 1);
  t.regex(String(throwing.stderr), /adapter acme:throwing-start failed to start: engine binary \/opt\/acme\/engine is missing/);
  // It reports no progress, so its ready timeout is what ends it (not its silence: a slow engine may be silent).
  const never = await rbee(
    ['--json', 'worker', 'spawn', '--type', 'never-ready', '--restart', 'never', '--ready-timeout', '2000', '--model', model, '--wait', '--timeout', '60'],
    {hive},
  );
  t.is(never.exitCode, 1);
  t.regex(String(never.stderr), /adapter acme:never-ready failed to start: not ready after 2 s/);
  t.is((await getJson(`${hive!.url}/health`)).status, 200);
});

test.serial('rbee adapter remove takes it out of the config by type', async t => {
  const removed = await rbee(['--json', 'adapter', 'remove', 'echo'], {cwd: project});
  t.is(removed.exitCode, 0, String(removed.stderr));
  const config = JSON.parse(fs.readFileSync(path.join(project, 'rbee.config.json'), 'utf8')) as {adapters: string[]};
  t.false(config.adapters.includes('./plugins/adapter-echo'));
});
