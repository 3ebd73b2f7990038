/**
 * Through a real hive: the default worker type and the refusal of a type on a device its adapter
 * does not run on, from the adapters' declarations. The machine gets one GPU from a STAND-IN
 * nvidia-smi (RBEE_NVIDIA_SMI; the driver's tool, not rbee's code); the config adds a third-party
 * plugin that runs on cuda only and ranks itself first there. No worker is started.
 */
import fs from 'node:fs';
import path from 'node:path';
import {fileURLToPath} from 'node:url';
import test from 'ava';
import {fakeNvidiaSmi} from '../helpers/fake-nvidia-smi.js';
import {getJson, postJson, rbee, startHive, tempHome, type RunningHive} from '../helpers/rbee-process.js';

const plugin = fileURLToPath(new URL('../fixtures/adapter-cuda-only/index.js', import.meta.url));
const project = tempHome('rbee-worker-type-backends-');
fs.writeFileSync(
  path.join(project, 'rbee.config.json'),
  JSON.stringify({
    adapters: [plugin],
    types: {'tensorrt-llm': {command: path.join(project, 'no-such-trtllm-serve')}},
  }),
);
let hive: RunningHive;

test.before(async () => {
  hive = await startHive({cwd: project, env: {RBEE_NVIDIA_SMI: fakeNvidiaSmi({gpus: [{name: 'NVIDIA H100 80GB HBM3', totalMiB: 81_559, usedMiB: 500}]})}});
});

test.after.always(async () => {
  await hive?.stop();
});

test.afterEach.always(async t => {
  const workers = await getJson(`${hive.url}/v1/workers?all=1`);
  t.deepEqual(workers.body.workers, [], 'nothing was started');
});

test.serial('no --type: the fastest the adapters declare for the device (the plugin on cuda, llama.cpp on the CPU)', async t => {
  const onGpu = await postJson(`${hive.url}/v1/workers`, {model: 'default', device: 'cuda:0', dry_run: true});
  t.is(onGpu.status, 200, JSON.stringify(onGpu.body));
  t.is(onGpu.body.type, 'cuda-only');
  const onCpu = await postJson(`${hive.url}/v1/workers`, {model: 'default', device: 'cpu', dry_run: true});
  t.is(onCpu.status, 200, JSON.stringify(onCpu.body));
  t.is(onCpu.body.type, 'llamacpp');
});

test.serial('a type on a backend its adapter does not declare: 400 naming the type, the device and where it runs', async t => {
  const response = await postJson(`${hive.url}/v1/workers`, {model: 'default', type: 'cuda-only', device: 'cpu'});
  t.is(response.status, 400);
  t.is(response.body.error.code, 'device_unsupported');
  t.is(response.body.error.message, 'worker type "cuda-only" does not run on cpu: it runs on cuda; pick another --device or --type');
  const cli = await rbee(['worker', 'spawn', '--type', 'cuda-only', '--device', 'cpu', '--model', 'default'], {hive});
  t.is(cli.exitCode, 2);
  t.regex(String(cli.stderr), /worker type "cuda-only" does not run on cpu: it runs on cuda; .*\[device_unsupported\]/);
});

test.serial("a built-in type whose engine is not installed: 400 with the adapter's reason, on the device it would run on and any other", async t => {
  const onGpu = await postJson(`${hive.url}/v1/workers`, {model: 'default', type: 'tensorrt-llm', device: 'cuda:0'});
  t.is(onGpu.status, 400);
  t.is(onGpu.body.error.code, 'device_unsupported');
  t.regex(
    onGpu.body.error.message,
    /^worker type "tensorrt-llm" cannot run on cuda:0 here: no trtllm-serve program ".*no-such-trtllm-serve": install TensorRT-LLM/,
  );
  const onCpu = await postJson(`${hive.url}/v1/workers`, {model: 'default', type: 'tensorrt-llm', device: 'cpu'});
  t.is(onCpu.status, 400);
  t.regex(onCpu.body.error.message, /^worker type "tensorrt-llm" does not run on cpu: it runs on cuda \(not here: no trtllm-serve program/);
});

test.serial("a spawn's own adapter options count: an engine program given with the spawn makes the type available", async t => {
  const response = await postJson(`${hive.url}/v1/workers`, {
    model: 'default',
    type: 'tensorrt-llm',
    device: 'cuda:0',
    adapter_options: {command: process.execPath},
    dry_run: true,
  });
  t.is(response.status, 200, JSON.stringify(response.body));
  t.is(response.body.type, 'tensorrt-llm');
});

test.serial('--engine: the program goes to the option the adapter declares for it, resolved from where the CLI runs', async t => {
  const direct = await postJson(`${hive.url}/v1/workers`, {model: 'default', type: 'tensorrt-llm', device: 'cuda:0', engine: process.execPath, dry_run: true});
  t.is(direct.status, 200, JSON.stringify(direct.body));
  t.is(direct.body.type, 'tensorrt-llm');
  // A relative path names a file beside the CLI, not beside the hive: the adapter's refusal shows the absolute path.
  const cli = await rbee(
    ['--json', 'worker', 'spawn', '--type', 'tensorrt-llm', '--device', 'cuda:0', '--model', 'default', '--engine', 'no-such-engine', '--dry-run'],
    {
      hive,
      cwd: project,
    },
  );
  t.is(cli.exitCode, 2, String(cli.stdout));
  t.regex(
    JSON.parse(String(cli.stdout)).error.message,
    new RegExp(`no trtllm-serve program "${path.join(project, 'no-such-engine').replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')}"`),
  );
});

test.serial(
  '--engine refused with the field named: no type, a type with no engine of its own, a relative path, a second engine in adapter_options',
  async t => {
    const cases: [Record<string, unknown>, RegExp][] = [
      [{engine: process.execPath}, /^engine: name the worker type it is the engine of/],
      [{engine: process.execPath, type: 'candle'}, /^engine: worker type "candle" runs no engine program of its own to choose$/],
      [{engine: 'bin/trtllm-serve', type: 'tensorrt-llm'}, /^engine: an absolute path, got "bin\/trtllm-serve"$/],
      [
        {engine: process.execPath, type: 'tensorrt-llm', adapter_options: {command: '/usr/bin/true'}},
        /^engine: adapter_options\.command already names another engine/,
      ],
    ];
    for (const [fields, message] of cases) {
      const response = await postJson(`${hive.url}/v1/workers`, {model: 'default', device: 'cuda:0', dry_run: true, ...fields});
      t.is(response.status, 400, JSON.stringify(fields));
      t.is(response.body.error.code, 'invalid_request');
      t.regex(response.body.error.message, message);
    }
  },
);
