import path from 'node:path';
import test from 'ava';
import {RbeeError} from '../../src/errors.js';
import {parseModelRef} from '../../src/models/model-ref.js';
import {describeModelRef, resolveModel} from '../../src/models/resolve-model.js';

const digest = 'ab'.repeat(32);

test('parses the default reference', t => {
  t.deepEqual(parseModelRef('default'), {kind: 'default'});
});

test('parses hf references with revision, subfolders and sha256', t => {
  t.deepEqual(parseModelRef('hf:org/repo:model.gguf'), {kind: 'hf', repo: 'org/repo', file: 'model.gguf', revision: 'main'});
  t.deepEqual(parseModelRef('hf:Org-1/Repo_2.x@v1:sub/dir/Model-Q4_K_M.gguf'), {
    kind: 'hf',
    repo: 'Org-1/Repo_2.x',
    file: 'sub/dir/Model-Q4_K_M.gguf',
    revision: 'v1',
  });
  t.deepEqual(parseModelRef(`hf:org/repo@refs/pr/1:model.gguf#sha256=${digest.toUpperCase()}`), {
    kind: 'hf',
    repo: 'org/repo',
    file: 'model.gguf',
    revision: 'refs/pr/1',
    sha256: digest,
  });
});

test('treats anything else as a local path resolved against the working directory', t => {
  t.deepEqual(parseModelRef('models/x.gguf'), {kind: 'path', path: path.resolve('models/x.gguf')});
  t.deepEqual(parseModelRef('/tmp/a.gguf'), {kind: 'path', path: '/tmp/a.gguf'});
  t.deepEqual(parseModelRef('./default'), {kind: 'path', path: path.resolve('default')});
});

const rejections: [ref: string, problem: RegExp][] = [
  ['', /empty/],
  ['hf:org/repo', /missing the file/],
  ['hf:org/repo:', /missing the file/],
  ['hf:repo:model.gguf', /must be <org>\/<repo>/],
  ['hf:org/repo/extra:model.gguf', /must be <org>\/<repo>/],
  ['hf:org/re po:model.gguf', /characters other than/],
  ['hf:org/..:model.gguf', /must not contain "\.\."/],
  ['hf:org/repo:../model.gguf', /must not contain "\.\." segments/],
  ['hf:org/repo:a/../model.gguf', /must not contain "\.\." segments/],
  ['hf:org/repo:a//model.gguf', /empty path segment/],
  ['hf:org/repo:model.bin', /not a \.gguf file/],
  ['hf:org/repo:mo$del.gguf', /characters other than/],
  ['hf:org/repo@:model.gguf', /revision after "@" is empty/],
  ['hf:org/repo@v 1:model.gguf', /revision "v 1"/],
  ['hf:org/repo:model.gguf#sha256=abc', /sha256 must be 64 hex/],
  ['hf:org/repo:model.gguf#md5=abc', /unknown suffix/],
];

for (const [ref, problem] of rejections) {
  test(`rejects ${JSON.stringify(ref)}`, t => {
    const error = t.throws(() => parseModelRef(ref), {instanceOf: RbeeError});
    t.is(error?.code, 'invalid_request');
    t.regex(error?.message ?? '', problem);
    if (ref !== '') {
      t.true(error?.message.includes(`"${ref}"`), 'the message names the reference');
    }
  });
}

test('describes references for humans', t => {
  t.regex(describeModelRef('default'), /default model/);
  t.is(describeModelRef('hf:org/repo:m.gguf'), 'm.gguf from Hugging Face org/repo');
  t.is(describeModelRef('hf:org/repo@v2:m.gguf'), 'm.gguf from Hugging Face org/repo@v2');
  t.is(describeModelRef('/tmp/m.gguf'), 'local file /tmp/m.gguf');
  t.is(describeModelRef('hf:broken'), 'hf:broken');
});

test("engine:<name> names a model in an engine's own store, kept as typed; resolving it as a file is refused with what takes it", async t => {
  t.deepEqual(parseModelRef('engine:llama3.2:1b'), {kind: 'engine', name: 'llama3.2:1b'});
  t.deepEqual(parseModelRef('engine:acme/coder:7b-q4'), {kind: 'engine', name: 'acme/coder:7b-q4'});
  for (const bad of ['engine:', 'engine:../x', 'engine:a//b', 'engine:has space', 'engine:-dash']) {
    const error = t.throws(() => parseModelRef(bad), {instanceOf: RbeeError}, bad);
    t.regex(error?.message ?? '', /expected engine:<name>/);
  }
  t.is(describeModelRef('engine:llama3.2:1b'), "llama3.2:1b from the engine's own store");
  const error = await t.throwsAsync(resolveModel('engine:llama3.2:1b', {modelsDir: '/nonexistent'}), {instanceOf: RbeeError});
  t.regex(error?.message ?? '', /engine:llama3\.2:1b names a model in an engine's own store, not a file rbee can open: .*--type ollama/);
});
