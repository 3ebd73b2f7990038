/**
 * The ollama adapter against the REAL Ollama: the `ollama` binary `rbee engines install ollama`
 * builds from its Go module (scripts/prepare-test-assets.mjs does so before the tests, cached),
 * behind a worker of a real hive, on the real test model. The worker's config imports the same
 * GGUF a second time under another name, so one worker serves two models.
 */
import fs from 'node:fs';
import path from 'node:path';
import test from 'ava';
import {findOllama} from '../../src/engines/ollama-build.js';
import {HeartbeatSchema, InferResponseSchema, InferStreamEventSchema, type Heartbeat} from '../../src/protocol/wire.js';
import {descendants, isAlive, waitFor} from '../helpers/process-tree.js';
import {getJson, postJson, postStream, rbee, startHive, tempHome, type RunningHive} from '../helpers/rbee-process.js';
import {defaultModelPath} from '../helpers/test-model.js';
import {readSse} from '../../src/protocol/sse-reader.js';

const installed = findOllama();
// In CI the engine is built before the tests: there a missing ollama is a failure, not a skip.
const serial = installed === null && process.env.CI !== 'true' ? test.serial.skip : test.serial;
const second = 'gemma-second';
let hive: RunningHive | undefined;
let project: string | undefined;

type Worker = {worker_id: string; url: string; pid: number; model: string};
let worker: Worker | undefined;

test.after.always(async () => {
  await hive?.stop();
  // The project holds a 240 MB copy of the test model (the second model): not left behind.
  if (project !== undefined) {
    fs.rmSync(project, {recursive: true, force: true});
  }
});

async function workerInfo(id: string) {
  return (await getJson(`${hive!.url}/v1/workers/${id}`)).body;
}

async function lastHeartbeat(): Promise<Heartbeat | null> {
  const beat = (await workerInfo(worker!.worker_id)).last_heartbeat;
  return beat === null || beat === undefined ? null : HeartbeatSchema.parse(beat);
}

/** The `ollama serve` under the worker: its pid and the environment the adapter gave it. */
function serveOf(workerPid: number): {pid: number; env: Map<string, string>} {
  const [pid] = descendants(workerPid).filter(candidate => {
    const argv = fs.readFileSync(`/proc/${candidate}/cmdline`, 'utf8').split('\0');
    return argv[0]?.endsWith('ollama') === true && argv[1] === 'serve';
  });
  if (pid === undefined) {
    throw new Error(`no ollama serve under worker ${workerPid}`);
  }
  const env = new Map(
    fs
      .readFileSync(`/proc/${pid}/environ`, 'utf8')
      .split('\0')
      .filter(Boolean)
      .map(entry => [entry.slice(0, entry.indexOf('=')), entry.slice(entry.indexOf('=') + 1)] as [string, string]),
  );
  return {pid, env};
}

/**
 * The test model with one letter of its `general.name` changed: the same weights under another
 * digest. Ollama runs one runner per model file, so the same GGUF under two names would load once.
 */
function ggufVariant(source: string, target: string): void {
  const data = fs.readFileSync(source);
  const key = data.indexOf('general.name');
  if (key < 0) {
    throw new Error(`${source} has no general.name`);
  }
  const valueType = data.readUInt32LE(key + 'general.name'.length);
  if (valueType !== 8) {
    throw new Error(`general.name of ${source} is not a string (type ${valueType})`);
  }
  const first = key + 'general.name'.length + 4 + 8;
  data[first] = data[first] === 0x58 ? 0x59 : 0x58; // 'X' (or 'Y' where it already was 'X')
  fs.writeFileSync(target, data);
}

const greedy = {prompt: 'The capital of France is', max_tokens: 16, temperature: 0, seed: 3};

/** `rbee worker spawn --type ollama … --wait` with the shape every worker here has (1 thread, 1 slot, context 1024). */
function spawnOllama(args: string[]) {
  const shape = ['--threads', '1', '--parallel', '1', '--context-size', '1024', '--wait', '--timeout', '240'];
  return rbee(['--json', 'worker', 'spawn', '--type', 'ollama', ...shape, ...args], {hive, timeout: 250_000});
}

serial('spawn on the default model: ollama serve on loopback with a private store, greedy 16 tokens through the hive equal Ollama’s own', async t => {
  t.not(installed, null, 'ollama is built (rbee engines install ollama)');
  const model = await defaultModelPath();
  project = tempHome('rbee-ollama-');
  const variant = path.join(project, 'second.gguf');
  ggufVariant(model, variant);
  fs.writeFileSync(path.join(project, 'rbee.config.json'), JSON.stringify({types: {ollama: {models: {[second]: variant}, keepAlive: '10m'}}}));
  hive = await startHive({cwd: project, args: ['--heartbeat-interval', '300']});
  const spawned = await spawnOllama(['--model', model, '--restart', 'on-failure']);
  t.is(spawned.exitCode, 0, String(spawned.stderr));
  worker = JSON.parse(String(spawned.stdout)) as Worker;
  const serve = serveOf(worker.pid);
  const host = serve.env.get('OLLAMA_HOST') ?? '';
  t.regex(host, /^127\.0\.0\.1:\d+$/, 'loopback, a port of its own');
  t.is(serve.env.get('OLLAMA_KEEP_ALIVE'), '10m');
  const store = serve.env.get('OLLAMA_MODELS')!;
  t.is(fs.statSync(store).mode & 0o777, 0o700, "the worker's own store, private");
  const engine = `http://${host}`;

  // Straight to Ollama, the same greedy continuation the adapter asks for.
  const ollamaName = (await getJson(`${engine}/api/tags`)).body.models.map((entry: {name: string}) => entry.name) as string[];
  t.true(ollamaName.length === 2, `both models imported: ${ollamaName.join(', ')}`);
  const straight = await postJson(`${engine}/api/generate`, {
    model: ollamaName.find(name => !name.startsWith(second))!,
    prompt: greedy.prompt,
    raw: true,
    stream: false,
    options: {temperature: 0, seed: 3, num_predict: 16, num_ctx: 1024},
  });
  t.is(straight.status, 200, JSON.stringify(straight.body));
  t.is(straight.body.eval_count, 16);

  const routed = InferResponseSchema.parse((await postJson(`${hive.url}/v1/infer`, {...greedy, model: worker.model})).body);
  t.is(routed.tokens_generated, 16);
  t.is(routed.finish_reason, 'length');
  t.true(routed.prompt_tokens > 0);
  t.is(routed.text, straight.body.response, 'through the hive, the text Ollama gives on its own');

  const streamed = await postStream(`${hive.url}/v1/infer`, {...greedy, model: worker.model, stream: true});
  const events = streamed.events.map(data => InferStreamEventSchema.parse(JSON.parse(data)));
  t.is(events.map(event => (event.type === 'token' ? event.text : '')).join(''), routed.text, 'streamed piece by piece, the same text');
  t.is(events.at(-1)?.type, 'done');

  const completion = await postJson(`${hive.url}/v1/completions`, {model: worker.model, prompt: greedy.prompt, max_tokens: 16, temperature: 0, seed: 3});
  t.is(completion.status, 200, JSON.stringify(completion.body));
  t.is(completion.body.choices[0].text, routed.text, 'the OpenAI route, the same greedy text');
  t.is(completion.body.usage.completion_tokens, 16);
  const chat = await postJson(`${hive.url}/v1/chat/completions`, {
    model: worker.model,
    messages: [{role: 'user', content: 'Say hi.'}],
    max_tokens: 8,
    temperature: 0,
  });
  t.is(chat.status, 200, JSON.stringify(chat.body));
  t.true(chat.body.usage.completion_tokens > 0);

  // What the engine itself prints goes to the worker's log (0600, under the hive's home).
  const logFile = path.join(hive.home, 'logs', `${worker.worker_id}.log`);
  t.is(fs.statSync(logFile).mode & 0o777, 0o600);
  t.true(fs.readFileSync(logFile, 'utf8').includes(`msg="Listening on ${host}`), "ollama serve's own output in the worker's log");
});

serial("the heartbeat mirrors /api/ps and /api/tags: loaded models, their memory and expiry, every model's name", async t => {
  const host = serveOf(worker!.pid).env.get('OLLAMA_HOST');
  const ps = (await getJson(`http://${host}/api/ps`)).body as {models: Array<{name: string; size_vram: number; expires_at: string}>};
  t.is(ps.models.length, 1);
  const expiry = new Date(ps.models[0]!.expires_at).toISOString();
  // A heartbeat taken after the last request ended carries the keep-alive deadline /api/ps gives now.
  await waitFor(async () => (await lastHeartbeat())?.model_expires_at?.[worker!.model] === expiry, 10_000, 'a heartbeat with the expiry /api/ps gives');
  const beat = (await lastHeartbeat())!;
  t.is(beat.adapter_type, 'ollama');
  t.deepEqual(beat.loaded_models, [worker!.model]);
  t.deepEqual(beat.vram_allocations, {[worker!.model]: ps.models[0]!.size_vram}, 'size_vram from /api/ps (0 on a CPU)');
  t.deepEqual([...(beat.available_models ?? [])].sort(), [second, worker!.model].sort());
  t.true((beat.ram_used ?? 0) > 100 * 1024 * 1024, "ollama's resident memory, runner included");
});

serial('two models in one worker, each by name; unload_model frees one (next heartbeat) and the worker goes on', async t => {
  const other = InferResponseSchema.parse((await postJson(`${hive!.url}/v1/infer`, {...greedy, model: second})).body);
  t.is(other.worker_id, worker!.worker_id, 'the second model is served by the same worker');
  t.is(other.tokens_generated, 16);
  await waitFor(
    async () => {
      const loaded = (await lastHeartbeat())?.loaded_models ?? [];
      return loaded.includes(second) && loaded.includes(worker!.model);
    },
    10_000,
    'both models loaded in the heartbeat',
  );
  const models = (await getJson(`${hive!.url}/v1/models`)).body as {data: Array<{id: string}>};
  t.true(
    models.data.some(entry => entry.id === second),
    'the hive lists the second model',
  );

  const command = await postJson(`${hive!.url}/v1/workers/${worker!.worker_id}/commands`, {type: 'unload_model', model: second});
  t.true(command.status < 300, JSON.stringify(command.body));
  await waitFor(async () => (await lastHeartbeat())?.loaded_models?.includes(second) === false, 15_000, 'the next heartbeats to show it unloaded');
  const beat = (await lastHeartbeat())!;
  t.deepEqual(beat.loaded_models, [worker!.model], 'the other model stays loaded');
  t.true(beat.available_models?.includes(second), 'still in the store, loadable on demand');
  t.false(Object.keys(beat.vram_allocations ?? {}).includes(second));
  const info = await workerInfo(worker!.worker_id);
  t.is(info.state, 'ready', 'the worker did not end');
  t.is(info.pid, worker!.pid);
  const again = InferResponseSchema.parse((await postJson(`${hive!.url}/v1/infer`, {...greedy, model: second})).body);
  t.is(again.text, other.text, 'loaded again on demand');
  const first = InferResponseSchema.parse((await postJson(`${hive!.url}/v1/infer`, {...greedy, model: worker!.model})).body);
  t.is(first.text, other.text, 'the same weights under two names: the same greedy text');
});

serial('engine kill -9: the worker is failed within 1 s, restarted by its policy, and serves again', async t => {
  // The restart loads the model into a new Ollama: minutes on a loaded 2-core machine, past ava's 3 min of silence.
  t.timeout(6 * 60_000, 'a restarted Ollama loads its model again');
  const serve = serveOf(worker!.pid);
  // The hive's own event stream says when it failed the worker (its clock is this machine's): no polling latency in the figure.
  const follow = new AbortController();
  const events = await fetch(`${hive!.url}/v1/events`, {signal: follow.signal});
  const failedAt = (async () => {
    for await (const event of readSse(events.body!)) {
      const parsed = JSON.parse(event.data) as {type: string; at?: string; worker?: {worker_id: string; state: string; reason: string | null}};
      if (parsed.type === 'worker' && parsed.worker?.worker_id === worker!.worker_id && parsed.worker.state === 'failed') {
        return {at: Date.parse(parsed.at!), reason: parsed.worker.reason ?? ''};
      }
    }
    throw new Error('the event stream ended before the worker failed');
  })();
  const killedAt = Date.now();
  process.kill(serve.pid, 'SIGKILL');
  const timeout = new Promise<never>((_resolve, reject) => setTimeout(() => reject(new Error('no failed event within 10 s')), 10_000).unref());
  const failed = await Promise.race([failedAt, timeout]);
  const failedAfter = failed.at - killedAt;
  follow.abort();
  t.regex(failed.reason, /ollama \(pid \d+\) was killed by SIGKILL/, 'the reason names the engine and the signal');
  t.log(`failed ${failedAfter} ms after the kill`);
  t.true(failedAfter <= 1_000, `failed ${failedAfter} ms after the kill`);
  await waitFor(() => !isAlive(worker!.pid), 10_000, 'the old worker process to be gone');
  await waitFor(
    async () => {
      const info = await workerInfo(worker!.worker_id);
      // At least one restart: under load a first restart may itself fail and be retried by the policy.
      return info.restarts >= 1 && info.state === 'ready';
    },
    240_000,
    'the restart policy to bring it back',
  );
  const info = await workerInfo(worker!.worker_id);
  const after = InferResponseSchema.parse((await postJson(`${hive!.url}/v1/infer`, {...greedy, model: worker!.model})).body);
  t.is(after.tokens_generated, 16);
  worker = {...worker!, pid: info.pid as number};
});

serial('stopping the worker leaves no process and removes its store', async t => {
  const tree = [worker!.pid, ...descendants(worker!.pid)];
  const store = serveOf(worker!.pid).env.get('OLLAMA_MODELS')!;
  t.true(tree.length >= 2);
  const stopped = await rbee(['--json', 'worker', 'stop', worker!.worker_id], {hive});
  t.is(JSON.parse(String(stopped.stdout)).state, 'stopped');
  await waitFor(() => tree.every(pid => !isAlive(pid)), 10_000, 'the worker, ollama serve and its runners to exit');
  t.false(fs.existsSync(store));
});

serial('--model engine:<name> serves a model already in an Ollama store, by its own name; a name the store lacks fails the start saying so', async t => {
  const model = await defaultModelPath();
  const store = path.join(project!, 'store');
  fs.mkdirSync(store, {mode: 0o700});
  const spawn = (args: string[]) => spawnOllama(['--restart', 'never', ...args]);
  // A first worker fills the store (a given store is the user's: it stays), and says what Ollama named the model.
  const filler = await spawn(['--model', model, '--adapter-option', `modelsDir=${store}`, '--adapter-option', 'preload=false']);
  t.is(filler.exitCode, 0, String(filler.stderr));
  const fillerInfo = JSON.parse(String(filler.stdout)) as Worker;
  const names = (await getJson(`http://${serveOf(fillerInfo.pid).env.get('OLLAMA_HOST')}/api/tags`)).body.models.map(
    (entry: {name: string}) => entry.name,
  ) as string[];
  // The hive's config imports the second model into every ollama worker's store too.
  const name = names.find(entry => !entry.startsWith(second)) ?? '';
  t.not(name, '', names.join(', '));
  await rbee(['worker', 'stop', fillerInfo.worker_id], {hive});
  t.true(fs.existsSync(store), 'a store given as an option is left in place');

  // A dry run says there is no file to size it by.
  const plan = await postJson(`${hive!.url}/v1/workers`, {type: 'ollama', model: `engine:${name}`, adapter_options: {modelsDir: store}, dry_run: true});
  t.is(plan.status, 200, JSON.stringify(plan.body));
  t.like(plan.body, {model: name, model_path: null, estimate: null, fits: true});
  t.regex(plan.body.reason, /a model in the engine's own store/);
  const served = await spawn(['--model', `engine:${name}`, '--adapter-option', `modelsDir=${store}`]);
  t.is(served.exitCode, 0, String(served.stderr));
  const info = JSON.parse(String(served.stdout)) as Worker & {model_path: string | null};
  t.is(info.model_path, null, 'no file behind it');
  const routed = InferResponseSchema.parse((await postJson(`${hive!.url}/v1/infer`, {...greedy, model: `engine:${name}`})).body);
  t.is(routed.tokens_generated, 16);
  const loaded = async () => ((await workerInfo(info.worker_id)).last_heartbeat?.loaded_models ?? []) as string[];
  await waitFor(
    async () => (await loaded()).some(entry => entry === name || entry === name.replace(/:latest$/, '')),
    30_000,
    'the model loaded, in the heartbeat',
  );
  await rbee(['worker', 'stop', info.worker_id], {hive});

  const missing = await spawn(['--model', 'engine:no-such-model:1b', '--adapter-option', `modelsDir=${store}`]);
  t.is(missing.exitCode, 1, String(missing.stdout));
  t.regex(JSON.parse(String(missing.stdout)).error.message, /the Ollama store at .*\/store has no model "no-such-model:1b" \(it has: /);
  // A type that loads files refuses the reference before anything starts.
  const refused = await postJson(`${hive!.url}/v1/workers`, {type: 'llamacpp', model: `engine:${name}`});
  t.is(refused.status, 400);
  t.regex(
    refused.body.error.message,
    /^model: worker type "llamacpp" loads model files; engine:.* names a model in an engine's own store \(those that do: .*ollama/,
  );
});
