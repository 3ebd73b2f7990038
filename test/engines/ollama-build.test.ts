/**
 * The ollama build's cache and the environment `go install` runs in. The build itself (go install,
 * tens of minutes cold) is exercised by scripts/prepare-test-assets.mjs and test/adapters/ollama.test.ts.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import test from 'ava';
import {findOllama, goBuildEnv, installOllama, ollamaCacheDir, ollamaVersion} from '../../src/engines/ollama-build.js';

test('the cache is keyed by version and platform; only a complete install is found, and it is reused as it is', async t => {
  const cache = fs.mkdtempSync(path.join(os.tmpdir(), 'rbee-ollama-cache-'));
  const env = {RBEE_CACHE_DIR: cache, PATH: ''};
  const dir = ollamaCacheDir(env);
  t.is(dir, path.join(cache, 'ollama', `${ollamaVersion}-${process.platform}-${process.arch}`));
  fs.mkdirSync(path.join(dir, 'bin'), {recursive: true});
  fs.writeFileSync(path.join(dir, 'bin', 'ollama'), '#!/bin/sh\n', {mode: 0o755});
  t.is(findOllama(env), null, 'no `complete` marker: an interrupted build is not used');
  fs.writeFileSync(path.join(dir, 'complete'), '{}\n');
  t.deepEqual(findOllama(env), {version: path.basename(dir), binary: path.join(dir, 'bin', 'ollama'), dir});
  // PATH is empty: had it tried to build, `go` could not have been found.
  t.deepEqual(await installOllama({env}), findOllama(env));
  fs.rmSync(cache, {recursive: true, force: true});
});

test("go install runs with its caches under rbee's, cgo on, and llama.cpp's vendor headers on the include path", t => {
  const env = goBuildEnv({RBEE_CACHE_DIR: '/c', PATH: '/bin'}, '/c/ollama/llama.cpp-v1-vendor/vendor', '/tmp/work/bin');
  t.like(env, {
    GOPATH: '/c/go',
    GOMODCACHE: '/c/go/pkg/mod',
    GOCACHE: '/c/go/build-cache',
    GOBIN: '/tmp/work/bin',
    GOFLAGS: '-mod=mod',
    CGO_ENABLED: '1',
    CGO_CPPFLAGS: '-I/c/ollama/llama.cpp-v1-vendor/vendor',
    GOTOOLCHAIN: 'auto',
    PATH: '/bin',
  });
  t.is(goBuildEnv({RBEE_CACHE_DIR: '/c', GOTOOLCHAIN: 'local'}, '/v', '/b').GOTOOLCHAIN, 'local', "the user's toolchain choice stands");
});

test('without a working go, the install says how to get one, in one line', async t => {
  const cache = fs.mkdtempSync(path.join(os.tmpdir(), 'rbee-ollama-nogo-'));
  await t.throwsAsync(installOllama({env: {RBEE_CACHE_DIR: cache, PATH: cache}}), {
    message: /no working `go` on PATH: install Go \(go\.dev\/dl\), then run `rbee engines install ollama` again/,
  });
  fs.rmSync(cache, {recursive: true, force: true});
});
