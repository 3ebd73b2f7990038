/**
 * The default model is the base Gemma 3 270M: `worker spawn --model default` says so in one line,
 * and /v1/models (hive and worker) carries `base_model: true` with the notice. The worker is the
 * echo plugin (read from the home's config) on the real default model file, cached in the home.
 */
import fs from 'node:fs';
import path from 'node:path';
import {fileURLToPath} from 'node:url';
import test from 'ava';
import {ModelListSchema} from '../../src/protocol/wire.js';
import {getJson, rbee, startHive, tempHome, workerAuth} from '../helpers/rbee-process.js';
import {defaultModelPath} from '../helpers/test-model.js';

const echoAdapter = fileURLToPath(new URL('../fixtures/adapter-echo', import.meta.url));

test('spawning the default model prints a one-line notice that it is a base model; /v1/models marks it base_model', async t => {
  const home = tempHome();
  const real = await defaultModelPath();
  const cached = path.join(home, 'models', 'default', path.basename(real));
  fs.mkdirSync(path.dirname(cached), {recursive: true});
  try {
    fs.linkSync(real, cached);
  } catch {
    fs.copyFileSync(real, cached);
  }
  fs.copyFileSync(`${real}.sha256`, `${cached}.sha256`);
  fs.writeFileSync(path.join(home, 'rbee.config.json'), JSON.stringify({adapters: [echoAdapter]}));
  const hive = await startHive({home, cwd: tempHome('rbee-elsewhere-')});
  t.teardown(() => hive.stop());

  const spawned = await rbee(['worker', 'spawn', '--type', 'echo', '--model', 'default', '--wait', '--timeout', '60'], {hive});
  t.is(spawned.exitCode, 0, String(spawned.stderr));
  const notes = String(spawned.stderr)
    .split('\n')
    .filter(line => line.startsWith('note: '));
  t.deepEqual(notes, [
    'note: the default model is the base Gemma 3 270M (pretrained, no chat template): it continues text rather than answering questions, so give it text to complete, e.g. "The capital of France is"',
  ]);
  const json = await rbee(['--json', 'worker', 'list'], {hive});
  const [worker] = (JSON.parse(String(json.stdout)) as {workers: Array<{url: string; worker_id: string}>}).workers;

  // The worker's own port asks for its key, like any direct caller.
  for (const [base, headers] of [
    [hive.url, {}],
    [worker!.url, await workerAuth(hive.url, worker!.worker_id)],
  ] as const) {
    const models = ModelListSchema.parse((await getJson(`${base}/v1/models`, headers)).body);
    t.is(models.data.length, 1);
    t.like(models.data[0], {id: 'gemma-3-270m-q4_k_m', base_model: true});
    t.regex(models.data[0]!.notice ?? '', /base Gemma 3 270M/);
  }
  await rbee(['worker', 'stop', worker!.worker_id], {hive});
});
