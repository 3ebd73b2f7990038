/** Memory estimates are made once per model file and worker shape, and again whenever the file changes. */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import test from 'ava';
import {EstimateCache, fileIdentity} from '../../src/hive/estimate-cache.js';

test('an estimate is computed once per file identity and shape', async t => {
  const cache = new EstimateCache<number>();
  let computed = 0;
  const compute = async () => ++computed;
  t.is(await cache.get('file-a', 'cpu:1024:1', compute), 1);
  t.is(await cache.get('file-a', 'cpu:1024:1', compute), 1, 'the same file and shape: the estimate made before');
  t.is(await cache.get('file-a', 'cpu:2048:1', compute), 2, 'another shape is estimated');
  t.is(await cache.get('file-b', 'cpu:1024:1', compute), 3, 'another file is estimated');
  // Two spawns at once share one estimate.
  const [first, second] = await Promise.all([cache.get('file-c', 'cpu:1024:1', compute), cache.get('file-c', 'cpu:1024:1', compute)]);
  t.is(first, 4);
  t.is(second, 4);
});

test('a failed estimate is not kept', async t => {
  const cache = new EstimateCache<number>();
  await t.throwsAsync(
    cache.get('file', 'cpu:1024:1', async () => Promise.reject(new Error('not a GGUF'))),
    {message: 'not a GGUF'},
  );
  t.is(await cache.get('file', 'cpu:1024:1', async () => 7), 7);
});

test('the cache keeps the most recently used estimates up to its limit', async t => {
  const cache = new EstimateCache<string>(2);
  await cache.get('a', 's', async () => 'a1');
  await cache.get('b', 's', async () => 'b1');
  await cache.get('a', 's', async () => 'a2'); // a is used again: b is now the oldest
  await cache.get('c', 's', async () => 'c1');
  t.is(cache.size, 2);
  t.is(await cache.get('a', 's', async () => 'a3'), 'a1');
  t.is(await cache.get('b', 's', async () => 'b2'), 'b2', 'b was dropped');
});

test("a file's identity changes when it is written to or replaced, not when it is only read", t => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'rbee-estimate-cache-'));
  t.teardown(() => fs.rmSync(dir, {recursive: true, force: true}));
  const file = path.join(dir, 'model.gguf');
  fs.writeFileSync(file, 'one');
  const identity = () => fileIdentity(fs.statSync(file, {bigint: true}));
  const first = identity();
  fs.readFileSync(file);
  t.is(identity(), first);
  fs.appendFileSync(file, 'more');
  const written = identity();
  t.not(written, first);
  const other = path.join(dir, 'other.gguf');
  fs.writeFileSync(other, 'one more');
  fs.renameSync(other, file);
  t.not(identity(), written);
});
