import {createHash, randomBytes} from 'node:crypto';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import test from 'ava';
import {RbeeError} from '../../src/errors.js';
import {resolveModel, type ModelProgress} from '../../src/models/resolve-model.js';
import {sendBytes, startFixtureServer} from '../helpers/http-fixture-server.js';
import {fakeGguf} from '../helpers/fake-gguf.js';

const model = fakeGguf(randomBytes(64 * 1024));
const modelSha256 = createHash('sha256').update(model).digest('hex');

async function tempDir(t: {teardown(fn: () => Promise<void>): void}): Promise<string> {
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'rbee-resolve-'));
  t.teardown(() => fs.rm(dir, {recursive: true, force: true}));
  return dir;
}

test('downloads an hf reference into the cache, then reuses it without the network', async t => {
  t.timeout(20_000);
  // Like Hugging Face: the resolve URL redirects to a CDN, and the LFS sha256 is on the redirect.
  const server = await startFixtureServer((request, response) => {
    if (request.url === '/org/repo/resolve/main/sub/tiny-model.gguf') {
      response.writeHead(302, {location: '/cdn/blob', 'x-linked-etag': `"${modelSha256}"`}).end();
    } else if (request.url === '/cdn/blob') {
      sendBytes(request, response, model, {headers: {etag: '"not-a-sha"'}});
    } else {
      response.writeHead(404).end();
    }
  });
  t.teardown(() => server.close());
  const modelsDir = await tempDir(t);
  const env = {RBEE_HF_ENDPOINT: `${server.url}/`};
  const progress: ModelProgress[] = [];

  const resolved = await resolveModel('hf:org/repo:sub/tiny-model.gguf', {modelsDir, env, onProgress: p => progress.push(p)});

  const expectedPath = path.join(modelsDir, 'hf', 'org', 'repo', 'main', 'sub', 'tiny-model.gguf');
  t.deepEqual(resolved, {ref: 'hf:org/repo:sub/tiny-model.gguf', kind: 'hf', path: expectedPath, name: 'tiny-model'});
  t.true((await fs.readFile(expectedPath)).equals(model));
  t.deepEqual(progress.at(-1), {phase: 'downloading', done: model.length, total: model.length});
  t.is(server.requests.length, 2);

  const again = await resolveModel('hf:org/repo:sub/tiny-model.gguf', {modelsDir, env});
  t.is(again.path, expectedPath);
  t.is(server.requests.length, 2, 'the cached file is used without asking the server');
});

test('the sha256 Hugging Face advertises on the redirect is enforced', async t => {
  t.timeout(20_000);
  const server = await startFixtureServer((request, response) => {
    if (request.url === '/org/repo/resolve/main/tiny.gguf') {
      response.writeHead(302, {location: '/cdn/blob', 'x-linked-etag': `"${'a'.repeat(64)}"`}).end();
    } else {
      sendBytes(request, response, model);
    }
  });
  t.teardown(() => server.close());
  const modelsDir = await tempDir(t);

  const error = await t.throwsAsync(resolveModel('hf:org/repo:tiny.gguf', {modelsDir, env: {RBEE_HF_ENDPOINT: server.url}}), {
    instanceOf: RbeeError,
  });

  t.is(error?.code, 'checksum_mismatch');
  t.deepEqual(await fs.readdir(path.join(modelsDir, 'hf', 'org', 'repo', 'main')), []);
});

test('an hf reference with a revision and a wrong sha256 fails and caches nothing', async t => {
  t.timeout(20_000);
  const server = await startFixtureServer((request, response) => {
    if (request.url === '/org/repo/resolve/v1/tiny.gguf') {
      sendBytes(request, response, model);
    } else {
      response.writeHead(404).end();
    }
  });
  t.teardown(() => server.close());
  const modelsDir = await tempDir(t);
  const ref = `hf:org/repo@v1:tiny.gguf#sha256=${'e'.repeat(64)}`;

  const error = await t.throwsAsync(resolveModel(ref, {modelsDir, env: {RBEE_HF_ENDPOINT: server.url}}), {
    instanceOf: RbeeError,
  });

  t.is(error?.code, 'checksum_mismatch');
  t.deepEqual(await fs.readdir(path.join(modelsDir, 'hf', 'org', 'repo', 'v1')), []);
});

test('an hf file the server does not have is model_not_found', async t => {
  t.timeout(20_000);
  const server = await startFixtureServer((_request, response) => {
    response.writeHead(404).end('Entry not found');
  });
  t.teardown(() => server.close());
  const modelsDir = await tempDir(t);

  const error = await t.throwsAsync(resolveModel('hf:org/repo:missing.gguf', {modelsDir, env: {RBEE_HF_ENDPOINT: server.url}}), {instanceOf: RbeeError});

  t.is(error?.code, 'model_not_found');
  t.true(error?.message.includes(`${server.url}/org/repo/resolve/main/missing.gguf`));
});

test('a local GGUF file resolves to its absolute path', async t => {
  const dir = await tempDir(t);
  const file = path.join(dir, 'My-Model.Q8_0.gguf');
  await fs.writeFile(file, model);

  const resolved = await resolveModel(path.relative(process.cwd(), file), {modelsDir: dir});

  t.is(resolved.kind, 'path');
  t.is(resolved.path, file);
  t.is(resolved.name, 'My-Model.Q8_0');
});

test('a missing local file is model_not_found', async t => {
  const dir = await tempDir(t);
  const file = path.join(dir, 'nope.gguf');

  const error = await t.throwsAsync(resolveModel(file, {modelsDir: dir}), {instanceOf: RbeeError});

  t.is(error?.code, 'model_not_found');
  t.is(error?.message, `model file not found: ${file}`);
});

test('a folder is not a model file', async t => {
  const dir = await tempDir(t);

  const error = await t.throwsAsync(resolveModel(dir, {modelsDir: dir}), {instanceOf: RbeeError});

  t.is(error?.code, 'model_not_found');
  t.true(error?.message.startsWith(`model file not found: ${dir}`));
});

test('a file without the GGUF magic is rejected', async t => {
  const dir = await tempDir(t);
  const notModel = path.join(dir, 'model.gguf');
  await fs.writeFile(notModel, '<html>Not found</html>');
  const tiny = path.join(dir, 'tiny.gguf');
  await fs.writeFile(tiny, 'GG');

  for (const file of [notModel, tiny]) {
    const error = await t.throwsAsync(resolveModel(file, {modelsDir: dir}), {instanceOf: RbeeError});
    t.is(error?.code, 'invalid_request');
    t.true(error?.message.startsWith(`${file} is not a GGUF file`));
  }
});

test('malformed references are invalid_request before anything is fetched', async t => {
  const dir = await tempDir(t);

  const error = await t.throwsAsync(resolveModel('hf:org/repo:model.bin', {modelsDir: dir}), {instanceOf: RbeeError});

  t.is(error?.code, 'invalid_request');
  t.deepEqual(await fs.readdir(dir), []);
});

test('concurrent resolutions of one hf reference download it once', async t => {
  t.timeout(20_000);
  const server = await startFixtureServer((request, response) => sendBytes(request, response, model));
  t.teardown(() => server.close());
  const modelsDir = await tempDir(t);
  const env = {RBEE_HF_ENDPOINT: server.url};

  const resolved = await Promise.all([1, 2, 3].map(() => resolveModel(`hf:org/repo:tiny.gguf#sha256=${modelSha256}`, {modelsDir, env})));

  t.is(new Set(resolved.map(r => r.path)).size, 1);
  t.is(server.requests.length, 1);
  t.true((await fs.readFile(resolved[0]?.path ?? '')).equals(model));
});
