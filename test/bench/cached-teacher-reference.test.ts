/**
 * The correctness tests' llama.cpp reference cache (bench/lib/cached-teacher-reference.ts): the
 * first call computes with llama.cpp and records, the second reads the very same answer back, and a
 * damaged or mismatched record is computed again, never trusted.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import test from 'ava';
import {cachedTeacherReference} from '../../bench/lib/cached-teacher-reference.js';
import {defaultModelPath} from '../helpers/test-model.js';

test('a reference is computed once, read back the same, and recomputed when its record is damaged', async t => {
  t.timeout(5 * 60_000, 'llama.cpp on a loaded machine');
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'rbee-references-'));
  t.teardown(() => fs.rmSync(dir, {recursive: true, force: true}));
  const modelPath = await defaultModelPath();
  const prompts = ['The capital of France is'];

  const first = await cachedTeacherReference(modelPath, prompts, 4, {dir});
  t.is(first.source, 'computed now');
  t.is(first[0]!.tokens.length, 4);
  t.is(first[0]!.distributions.length, 4);
  const [file] = fs.readdirSync(dir);
  t.truthy(file);
  t.is(fs.statSync(path.join(dir, file!)).mode & 0o777, 0o600);

  const second = await cachedTeacherReference(modelPath, prompts, 4, {dir});
  t.regex(second.source, /^recorded /);
  t.deepEqual([...second], [...first]);
  t.is(second.cpuVariant, first.cpuVariant);

  // Another token count is another key: not served from the first record.
  const longer = await cachedTeacherReference(modelPath, prompts, 5, {dir});
  t.is(longer.source, 'computed now');
  t.deepEqual(longer[0]!.tokens.slice(0, 4), first[0]!.tokens);

  fs.writeFileSync(path.join(dir, file!), '{"key": "damaged"');
  const again = await cachedTeacherReference(modelPath, prompts, 4, {dir});
  t.is(again.source, 'computed now');
  t.deepEqual([...again], [...first]);
});
