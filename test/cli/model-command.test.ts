/**
 * `rbee model list` and `rbee model rm` over a real cache layout (files where the resolvers put
 * them, with and without a sha256 sidecar), and rm's refusal while a live worker (a plugin worker
 * of a real hive, reading the home's config) has the file as its model.
 */
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import {fileURLToPath} from 'node:url';
import test from 'ava';
import {defaultModelPath} from '../../src/models/default-model.js';
import {fakeGguf} from '../helpers/fake-gguf.js';
import {rbee, startHive, tempHome} from '../helpers/rbee-process.js';
import {defaultModelPath as testModelPath} from '../helpers/test-model.js';

const echoAdapter = fileURLToPath(new URL('../fixtures/adapter-echo', import.meta.url));

function cache(home: string) {
  const models = path.join(home, 'models');
  const verified = defaultModelPath(models);
  const bytes = fakeGguf(Buffer.from('default model bytes'));
  fs.mkdirSync(path.dirname(verified), {recursive: true});
  fs.writeFileSync(verified, bytes);
  const digest = crypto.createHash('sha256').update(bytes).digest('hex');
  fs.writeFileSync(`${verified}.sha256`, JSON.stringify({sha256: digest, size: bytes.length}));
  const downloaded = path.join(models, 'hf', 'acme', 'tiny', 'v2', 'q4', 'tiny.gguf');
  fs.mkdirSync(path.dirname(downloaded), {recursive: true});
  fs.writeFileSync(downloaded, fakeGguf(Buffer.alloc(1000, 7)));
  // A download in progress is not an entry.
  fs.writeFileSync(path.join(path.dirname(downloaded), 'other.gguf.part'), 'partial');
  return {models, verified, digest, downloaded};
}

type Listed = {models_dir: string; models: Array<{ref: string; name: string; path: string; size: number; sha256: string | null; used_by: string[]}>};

test('model list shows each cached model (reference, size, sha256 when known, path) and model rm deletes one by reference, sidecar included', async t => {
  const home = tempHome();
  const {models, verified, digest, downloaded} = cache(home);
  const env = {RBEE_HOME: home, RBEE_HIVE_URL: 'http://127.0.0.1:9'};
  const listed = await rbee(['--json', 'model', 'list'], {env});
  t.is(listed.exitCode, 0, String(listed.stderr));
  const list = JSON.parse(String(listed.stdout)) as Listed;
  t.is(list.models_dir, models);
  t.deepEqual(
    list.models.map(model => [model.ref, model.path, model.size, model.sha256, model.used_by]),
    [
      ['default', verified, fs.statSync(verified).size, digest, []],
      ['hf:acme/tiny@v2:q4/tiny.gguf', downloaded, fs.statSync(downloaded).size, null, []],
    ],
  );
  const text = await rbee(['model', 'list'], {env});
  t.regex(String(text.stdout), new RegExp(`default\\s+\\S+ B\\s+${digest.slice(0, 12)}\\s+-\\s+${verified}`));

  const removed = await rbee(['--json', 'model', 'rm', 'default'], {env});
  t.is(removed.exitCode, 0, String(removed.stderr));
  t.false(fs.existsSync(verified));
  t.false(fs.existsSync(`${verified}.sha256`));
  const missing = await rbee(['--json', 'model', 'rm', 'default'], {env});
  t.is(missing.exitCode, 4);
  t.is(JSON.parse(String(missing.stdout)).error.code, 'model_not_found');
  t.true(fs.existsSync(downloaded), 'the other entry is untouched');
});

test('model rm refuses a model a live worker uses, naming the worker, unless --force', async t => {
  const home = tempHome();
  const {downloaded} = cache(home);
  // A worker's spawn reads the model's metadata (the memory estimate): a real GGUF, linked rather than copied where it can be.
  fs.rmSync(downloaded);
  const real = await testModelPath();
  try {
    fs.linkSync(real, downloaded);
  } catch {
    fs.copyFileSync(real, downloaded);
  }
  fs.writeFileSync(path.join(home, 'rbee.config.json'), JSON.stringify({adapters: [echoAdapter]}));
  const hive = await startHive({home, cwd: tempHome('rbee-elsewhere-')});
  t.teardown(() => hive.stop());
  const spawned = await rbee(['--json', 'worker', 'spawn', '--type', 'echo', '--model', downloaded, '--wait', '--timeout', '60'], {hive});
  t.is(spawned.exitCode, 0, String(spawned.stderr));
  const worker = JSON.parse(String(spawned.stdout)) as {worker_id: string};

  const listed = JSON.parse(String((await rbee(['--json', 'model', 'list'], {hive})).stdout)) as Listed;
  t.deepEqual(listed.models.find(model => model.path === downloaded)?.used_by, [worker.worker_id]);
  const refused = await rbee(['--json', 'model', 'rm', downloaded], {hive});
  t.is(refused.exitCode, 2);
  t.regex(JSON.parse(String(refused.stdout)).error.message, new RegExp(`in use by ${worker.worker_id}: stop it first, or pass --force`));
  t.true(fs.existsSync(downloaded));
  const forced = await rbee(['--json', 'model', 'rm', downloaded, '--force'], {hive});
  t.is(forced.exitCode, 0, String(forced.stderr));
  t.deepEqual(JSON.parse(String(forced.stdout)).used_by, [worker.worker_id]);
  t.false(fs.existsSync(downloaded));
  await rbee(['worker', 'stop', worker.worker_id], {hive});
});
