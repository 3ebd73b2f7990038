/**
 * The built-in TensorRT-LLM adapter (adapters/tensorrt-llm) through a real hive. The engine in
 * most tests is a STAND-IN for trtllm-serve (test/fixtures/standins/trtllm-standin.mjs, a small
 * Node server replaying trtllm-serve's CLI and HTTP protocol: OpenAI routes, /health, /v1/models,
 * and /metrics as a JSON array of iteration statistics), set as the adapter's `command` in the
 * project's rbee.config.json. The last test runs a real trtllm-serve, only when
 * RBEE_TEST_TRTLLM=<path to trtllm-serve> and RBEE_TEST_TRTLLM_MODEL=<model folder> are set.
 */
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import test from 'ava';
import {execa} from 'execa';
import {HeartbeatSchema, InferResponseSchema, InferStreamEventSchema, type Heartbeat} from '../../src/protocol/wire.js';
import {descendants, isAlive, processesMentioning, waitFor} from '../helpers/process-tree.js';
import {getJson, postJson, postStream, rbee, rbeeBin, startHive, tempHome, workerAuth, type RunningHive} from '../helpers/rbee-process.js';
import {StandinEngines} from '../helpers/standin-engines.js';
import {defaultModelPath} from '../helpers/test-model.js';
import {fakeNvidiaSmi} from '../helpers/fake-nvidia-smi.js';
import {heartbeatSink} from '../helpers/heartbeat-sink.js';
import {spawnStandinWorker, standinProject, type StandinWorker} from '../helpers/trtllm-standin.js';

// Extra args come last and win: the engine batches one request at a time while the worker admits
// --parallel, so requests visibly queue in the engine.
const project = standinProject('rbee-trtllm-standin-', ['--max_batch_size', '1']);
const gpuMemUsage = 3 * 1024 ** 3;
let hive: RunningHive | undefined;
const engines = new StandinEngines('trtllm-standin.mjs');

type Worker = StandinWorker;

test.before(async () => {
  // TensorRT-LLM runs on NVIDIA GPUs only (its adapter declares cuda alone): the hive is shown one
  // card by a STAND-IN nvidia-smi, and the stand-in engine does not care which device it is given.
  const nvidiaSmi = fakeNvidiaSmi({gpus: [{name: 'NVIDIA H100 80GB HBM3', totalMiB: 81_559, usedMiB: 500}]});
  hive = await startHive({
    cwd: project,
    args: ['--heartbeat-interval', '300'],
    env: {RBEE_STANDIN_TOKEN_MS: '25', RBEE_STANDIN_GPU_MEM: String(gpuMemUsage), RBEE_NVIDIA_SMI: nvidiaSmi},
  });
});

test.after.always(async () => {
  await hive?.stop();
  engines.killLeftovers();
});

const engineOf = (worker: Worker) => engines.of(worker);

async function workerInfo(id: string) {
  return (await getJson(`${hive!.url}/v1/workers/${id}`)).body;
}

let first: Worker | undefined;

test.serial("stand-in trtllm-serve: spawn --type tensorrt-llm runs `trtllm-serve <model>` with the worker's shape and iteration stats on", async t => {
  first = await spawnStandinWorker(hive!, ['--parallel', '2', '--context-size', '1024']);
  const engine = engineOf(first);
  const model = await defaultModelPath();
  const port = engine.args[engine.args.indexOf('--port') + 1]!;
  const optionsFile = engine.args[engine.args.indexOf('--extra_llm_api_options') + 1]!;
  t.deepEqual(engine.args, [
    model,
    '--host',
    '127.0.0.1',
    '--port',
    port,
    '--max_batch_size',
    '2',
    '--max_seq_len',
    '1024',
    '--extra_llm_api_options',
    optionsFile,
    '--max_batch_size',
    '1',
  ]);
  t.regex(fs.readFileSync(optionsFile, 'utf8'), /^enable_iter_perf_stats: true$/m);
  t.is((await workerInfo(first.worker_id)).state, 'ready');
});

test.serial("stand-in trtllm-serve: infer plain and streamed, direct and through the hive, chat; the engine's own model id is used", async t => {
  const worker = first!;
  const engine = engineOf(worker);
  const model = await defaultModelPath();
  const direct = await postJson(
    `${worker.url}/v1/infer`,
    {prompt: 'bees make honey', max_tokens: 5, temperature: 0.3, top_k: 4, top_p: 0.9, seed: 5},
    {headers: await workerAuth(hive!.url, worker.worker_id)},
  );
  t.is(direct.status, 200, JSON.stringify(direct.body));
  t.like(InferResponseSchema.parse(direct.body), {text: 'bees make honey bees make ', tokens_generated: 5, prompt_tokens: 3, finish_reason: 'length'});
  // trtllm-serve serves a model given as a file path under that path (from /v1/models).
  t.like((await getJson(`${engine.url}/standin/last-request`)).body, {
    model,
    prompt: 'bees make honey',
    max_tokens: 5,
    temperature: 0.3,
    top_k: 4,
    top_p: 0.9,
    seed: 5,
    stream: true,
    stream_options: {include_usage: true},
  });
  t.like(
    InferResponseSchema.parse(
      (await postJson(`${worker.url}/v1/infer`, {prompt: 'bees EOS', max_tokens: 10}, {headers: await workerAuth(hive!.url, worker.worker_id)})).body,
    ),
    {text: 'bees EOS ', finish_reason: 'stop'},
  );

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
  const routedStream = await postStream(`${hive!.url}/v1/infer`, {prompt: 'to be or not', max_tokens: 2, stream: true, model: worker.model});
  t.deepEqual(
    routedStream.events.map(data => JSON.parse(data).type),
    ['token', 'token', 'done'],
  );
  const chat = await postJson(`${hive!.url}/v1/chat/completions`, {model: worker.model, messages: [{role: 'user', content: 'hello there'}], max_tokens: 2});
  t.is(chat.status, 200, JSON.stringify(chat.body));
  t.is(chat.body.choices[0].message.content, 'hello there ');
});

test.serial('stand-in trtllm-serve: the heartbeat carries the iteration statistics (active, queued, GPU memory)', async t => {
  const worker = first!;
  const model = await defaultModelPath();
  const seen: Heartbeat[] = [];
  let done = false;
  const requests = Promise.all([1, 2].map(() => postJson(`${hive!.url}/v1/infer`, {prompt: 'bees make honey', max_tokens: 30, model: worker.model})));
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
  t.is(Math.max(...seen.map(heartbeat => heartbeat.batch_size ?? 0)), 1, 'numActiveRequests: one at a time (--max_batch_size 1)');
  t.true(Math.max(...seen.map(heartbeat => heartbeat.queue_depth ?? 0)) >= 1, 'numQueuedRequests: the other waits in the engine');

  await waitFor(async () => (await workerInfo(worker.worker_id)).last_heartbeat?.batch_size === 0, 5_000, 'an idle heartbeat');
  const idle = HeartbeatSchema.parse((await workerInfo(worker.worker_id)).last_heartbeat);
  t.is(idle.adapter_type, 'tensorrt-llm');
  t.deepEqual(idle.loaded_models, [model]);
  t.is(idle.vram_used, gpuMemUsage, 'gpuMemUsage of the last iteration, kept while idle');
  t.deepEqual(idle.vram_allocations, {[model]: gpuMemUsage});
  t.is(idle.queue_depth, 0);
  t.true((idle.ram_used ?? 0) > 10 * 1024 * 1024);
});

test.serial('stand-in trtllm-serve: stopping the worker stops the engine, removes its options file and leaves no process', async t => {
  const worker = first!;
  const engine = engineOf(worker);
  const optionsFile = engine.args[engine.args.indexOf('--extra_llm_api_options') + 1]!;
  const tree = [worker.pid, ...descendants(worker.pid)];
  const stopped = await rbee(['--json', 'worker', 'stop', worker.worker_id], {hive});
  t.is(JSON.parse(String(stopped.stdout)).state, 'stopped');
  await waitFor(() => tree.every(pid => !isAlive(pid)), 10_000, 'the worker and its engine to exit');
  t.deepEqual(processesMentioning(worker.worker_id), []);
  t.false(fs.existsSync(optionsFile));
});

test.serial('stand-in trtllm-serve: an engine that dies mid-request answers engine_error naming the exit, and the hive fails the worker', async t => {
  const worker = await spawnStandinWorker(hive!);
  const engine = engineOf(worker);
  const crashed = await postJson(
    `${worker.url}/v1/infer`,
    {prompt: 'please CRASH now', max_tokens: 5},
    {headers: await workerAuth(hive!.url, worker.worker_id)},
  );
  t.is(crashed.status, 500, JSON.stringify(crashed.body));
  t.is(crashed.body.error.code, 'engine_error');
  t.regex(crashed.body.error.message, /trtllm-serve \(pid \d+\) exited with code 1: .*engine core died \(CRASH prompt/);
  await waitFor(async () => (await workerInfo(worker.worker_id)).state === 'failed', 10_000, 'the hive to fail the worker');
  t.regex((await workerInfo(worker.worker_id)).reason ?? '', /trtllm-serve \(pid \d+\) exited with code 1/);
  await waitFor(() => !isAlive(worker.pid) && !isAlive(engine.pid), 10_000, 'the worker and its engine to be gone');
  t.deepEqual(processesMentioning(worker.worker_id), []);
});

test.serial('stand-in trtllm-serve: an engine killed under the worker makes the hive fail the worker', async t => {
  const worker = await spawnStandinWorker(hive!);
  process.kill(engineOf(worker).pid, 'SIGKILL');
  await waitFor(async () => (await workerInfo(worker.worker_id)).state === 'failed', 10_000, 'the hive to see the engine die');
  t.regex((await workerInfo(worker.worker_id)).reason ?? '', /trtllm-serve \(pid \d+\) was killed by SIGKILL/);
  await waitFor(() => !isAlive(worker.pid), 10_000, 'the failed worker to exit');
});

test.serial('TensorRT-LLM adapter options are validated: the error names the adapter and the option', async t => {
  const bad = tempHome('rbee-trtllm-options-');
  fs.writeFileSync(path.join(bad, 'rbee.config.json'), JSON.stringify({types: {'tensorrt-llm': {backend: 'onnx', args: 'not-a-list'}}}));
  const listed = await rbee(['--json', 'adapter', 'list'], {cwd: bad});
  const result = JSON.parse(String(listed.stdout)) as {adapters: Array<{type: string}>; errors: Array<{source: string; message: string}>};
  t.false(result.adapters.some(adapter => adapter.type === 'tensorrt-llm'));
  const error = result.errors.find(entry => entry.source === 'built-in tensorrt-llm');
  t.regex(error?.message ?? '', /options of adapter rbee:tensorrt-llm/);
  t.regex(error?.message ?? '', /backend/);
  t.regex(error?.message ?? '', /args/);
});

// ---------------------------------------------------------------------------------------------
// The real engine needs an NVIDIA GPU and a TensorRT-LLM install; the model is a Hugging Face
// folder, which the hive does not spawn (it takes GGUF files), so the worker runs standalone
// (`rbee worker run`) heartbeating to a recording stand-in hive.

const realServe = process.env.RBEE_TEST_TRTLLM;
const realModel = process.env.RBEE_TEST_TRTLLM_MODEL;
const realEnabled = realServe !== undefined && realServe !== '' && realModel !== undefined && realModel !== '';
const realTest = realEnabled ? test.serial : test.serial.skip;

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
  `real trtllm-serve behind a worker: ready, infer plain/streamed/chat, heartbeat with iteration stats, stop leaves nothing${realEnabled ? '' : ' [skipped: set RBEE_TEST_TRTLLM=<path to trtllm-serve> and RBEE_TEST_TRTLLM_MODEL=<model folder>]'}`,
  async t => {
    t.timeout(10 * 60_000);
    const home = tempHome('rbee-trtllm-real-');
    const config = path.join(home, 'rbee.config.json');
    fs.writeFileSync(config, JSON.stringify({types: {'tensorrt-llm': {command: realServe}}}));
    const fakeHive = await heartbeatSink();
    const {heartbeats, url: hiveUrl} = fakeHive;
    const port = await freePort();
    const worker = execa(
      process.execPath,
      [
        rbeeBin,
        'worker',
        'run',
        '--type',
        'tensorrt-llm',
        '--worker-id',
        `real-trtllm-${process.pid}`,
        '--model-path',
        realModel!,
        '--device',
        process.env.RBEE_TEST_TRTLLM_DEVICE ?? 'cuda:0',
        '--port',
        String(port),
        '--hive-url',
        hiveUrl,
        '--heartbeat-interval',
        '1000',
        '--orphan-timeout',
        '600000',
        '--parallel',
        '2',
        '--context-size',
        '1024',
        '--config',
        config,
      ],
      {
        reject: false,
        env: {RBEE_WORKER_SECRET: 'real-trtllm-test-secret', RBEE_HOME: home},
        all: true,
      },
    );
    const url = `http://127.0.0.1:${port}`;
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
        8 * 60_000,
        'trtllm-serve to load the model',
      );
      const plain = InferResponseSchema.parse((await postJson(`${url}/v1/infer`, {prompt: 'The capital of France is', max_tokens: 8, temperature: 0})).body);
      t.is(plain.tokens_generated, 8);
      const streamed = await postStream(`${url}/v1/infer`, {prompt: 'The capital of France is', max_tokens: 8, temperature: 0, stream: true});
      const events = streamed.events.map(data => InferStreamEventSchema.parse(JSON.parse(data)));
      t.is(events.flatMap(event => (event.type === 'token' ? [event.text] : [])).join(''), plain.text);
      const chat = await postJson(`${url}/v1/chat/completions`, {messages: [{role: 'user', content: 'Say hi.'}], max_tokens: 8});
      t.is(chat.status, 200, JSON.stringify(chat.body));
      await waitFor(() => heartbeats.some(heartbeat => (heartbeat.vram_used ?? 0) > 0), 20_000, 'a heartbeat with gpuMemUsage');
      t.is(heartbeats.at(-1)!.adapter_type, 'tensorrt-llm');
      t.is(heartbeats.at(-1)!.loaded_models?.length, 1);
    } finally {
      worker.kill('SIGTERM');
      await worker;
      fakeHive.close();
    }
    await waitFor(() => processesMentioning(realModel!).length === 0, 30_000, 'no trtllm-serve process left');
    t.pass();
  },
);
