/** Admission against the real model's GGUF metadata, through the hive's API and the CLI. */
import fs from 'node:fs';
import path from 'node:path';
import test from 'ava';
import {estimateMemory} from '../../src/hive/admission.js';
import {SpawnPlanSchema} from '../../src/protocol/wire.js';
import {getJson, postJson, rbee, startHive, type RunningHive} from '../helpers/rbee-process.js';
import {defaultModelPath} from '../helpers/test-model.js';
import {writeTinyGguf} from '../native/tiny-gguf.js';

let hive: RunningHive;
let modelPath: string;

test.before(async () => {
  modelPath = await defaultModelPath();
  hive = await startHive();
});

test.after.always(async () => {
  await hive?.stop();
});

test.serial('the estimate grows with the context and covers the weights', async t => {
  const small = await estimateMemory({modelPath, device: 'cpu', contextSize: 512, parallel: 1});
  const large = await estimateMemory({modelPath, device: 'cpu', contextSize: 8192, parallel: 4});
  const huge = await estimateMemory({modelPath, device: 'cpu', contextSize: 131_072, parallel: 16});
  t.true(small.weights > 200 * 1024 * 1024 && small.weights < 400 * 1024 * 1024, `weights ${small.weights}`);
  t.true(large.context > small.context);
  t.true(huge.context > 100 * large.context, 'past the trained context the estimate keeps growing');
  t.is(large.total, large.weights + large.context);
});

test.serial('an estimate is made again when the model file at the same path is replaced', async t => {
  const llama = writeTinyGguf('llama');
  const qwen = writeTinyGguf('qwen3');
  t.teardown(() => {
    fs.rmSync(path.dirname(llama), {recursive: true, force: true});
    fs.rmSync(path.dirname(qwen), {recursive: true, force: true});
  });
  const shape = {device: 'cpu', contextSize: 512, parallel: 1};
  const ofQwen = await estimateMemory({modelPath: qwen, ...shape});
  const before = await estimateMemory({modelPath: llama, ...shape});
  t.not(before.weights, ofQwen.weights, 'the two files take different memory');
  t.deepEqual(await estimateMemory({modelPath: llama, ...shape}), before);
  fs.copyFileSync(qwen, llama);
  t.deepEqual(await estimateMemory({modelPath: llama, ...shape}), ofQwen, "the replaced file's own estimate, not the one before");
});

test.serial('--dry-run says where the worker would go and what it would take, and starts nothing', async t => {
  const cli = await rbee(['--json', 'worker', 'spawn', '--model', modelPath, '--dry-run'], {hive});
  t.is(cli.exitCode, 0, String(cli.stderr));
  const plan = SpawnPlanSchema.parse(JSON.parse(String(cli.stdout)));
  t.is(plan.device, 'cpu');
  t.true(plan.fits);
  t.true((plan.estimate?.total ?? 0) > 0);
  t.true(plan.free_memory > 0);
  t.deepEqual((await getJson(`${hive.url}/v1/workers?all=1`)).body.workers, []);
});

test.serial('a spawn that cannot fit is refused with the figures, unless forced in a dry run', async t => {
  const huge = {model: modelPath, context_size: 1_048_576, parallel: 64}; // terabytes of KV cache
  const refused = await postJson(`${hive.url}/v1/workers`, huge);
  t.is(refused.status, 409);
  t.is(refused.body.error.code, 'insufficient_memory');
  t.regex(refused.body.error.message, /needs about \d+ MiB .* free/);
  const plan = await postJson(`${hive.url}/v1/workers`, {...huge, dry_run: true});
  t.false(SpawnPlanSchema.parse(plan.body).fits);
  const cli = await rbee(['worker', 'spawn', '--model', modelPath, '--context-size', '1048576', '--parallel', '64'], {hive});
  t.is(cli.exitCode, 1);
  t.regex(String(cli.stderr), /insufficient_memory/);
  t.deepEqual((await getJson(`${hive.url}/v1/workers?all=1`)).body.workers, []);
});
