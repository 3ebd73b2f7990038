/**
 * hf: downloads keep a checksum sidecar and are checked again on use: a cached file that was cut
 * short or changed fails with "damaged cache entry … run `rbee model pull --force …`", and that
 * command fetches it again. Against a local hub (test/helpers/http-fixture-server.ts).
 */
import {createHash, randomBytes} from 'node:crypto';
import fs from 'node:fs/promises';
import path from 'node:path';
import test from 'ava';
import {readCacheChecksum} from '../../src/models/cache-checksum.js';
import {resolveModel} from '../../src/models/resolve-model.js';
import {RbeeError} from '../../src/errors.js';
import {fakeGguf} from '../helpers/fake-gguf.js';
import {sendBytes, startFixtureServer, type FixtureServer} from '../helpers/http-fixture-server.js';
import {rbee, tempHome} from '../helpers/rbee-process.js';

const model = fakeGguf(randomBytes(256 * 1024));
const modelSha256 = createHash('sha256').update(model).digest('hex');
const ref = 'hf:org/repo:tiny.gguf';

/** A hub that gives the LFS sha256 on the redirect, as Hugging Face does, or none at all. */
async function hub(t: {teardown(fn: () => Promise<void>): void}, options: {advertise: boolean}): Promise<FixtureServer> {
  const server = await startFixtureServer((request, response) => {
    if (request.url === '/org/repo/resolve/main/tiny.gguf') {
      response.writeHead(302, {location: '/cdn/blob', ...(options.advertise ? {'x-linked-etag': `"${modelSha256}"`} : {})}).end();
    } else if (request.url === '/cdn/blob') {
      sendBytes(request, response, model);
    } else {
      response.writeHead(404).end();
    }
  });
  t.teardown(() => server.close());
  return server;
}

async function cachedPath(home: string): Promise<string> {
  return path.join(home, 'models', 'hf', 'org', 'repo', 'main', 'tiny.gguf');
}

test("a download records the hub's sha256, its size and mtime beside the file, 0600", async t => {
  const server = await hub(t, {advertise: true});
  const home = tempHome();
  const resolved = await resolveModel(ref, {modelsDir: path.join(home, 'models'), env: {RBEE_HF_ENDPOINT: server.url}});
  const sidecar = await readCacheChecksum(resolved.path);
  const stats = await fs.stat(resolved.path);
  t.deepEqual(sidecar, {sha256: modelSha256, size: model.length, mtime_ms: stats.mtimeMs, source: 'hub'});
  t.is((stats.mode & 0o777).toString(8), '600');
  t.is(((await fs.stat(`${resolved.path}.sha256`)).mode & 0o777).toString(8), '600');
});

test('without a checksum from the hub, the one computed at download end is recorded', async t => {
  const server = await hub(t, {advertise: false});
  const home = tempHome();
  const resolved = await resolveModel(ref, {modelsDir: path.join(home, 'models'), env: {RBEE_HF_ENDPOINT: server.url}});
  t.like(await readCacheChecksum(resolved.path), {sha256: modelSha256, source: 'computed'});
});

test('a truncated cache entry fails on use, naming the command that fixes it; model pull --force fetches it again', async t => {
  const server = await hub(t, {advertise: true});
  const home = tempHome();
  const env = {RBEE_HF_ENDPOINT: server.url};
  const file = await cachedPath(home);
  await resolveModel(ref, {modelsDir: path.join(home, 'models'), env});
  await fs.truncate(file, model.length - 1000);
  const requestsBefore = server.requests.length;

  const error = await t.throwsAsync(resolveModel(ref, {modelsDir: path.join(home, 'models'), env}), {instanceOf: RbeeError});
  t.is(error?.code, 'damaged_cache_entry');
  t.is(
    error?.message,
    `damaged cache entry ${file}: ${model.length - 1000} bytes where ${model.length} were downloaded; run \`rbee model pull --force ${ref}\``,
  );
  t.is(server.requests.length, requestsBefore, "nothing is fetched behind the user's back");

  const pull = await rbee(['model', 'pull', ref], {env: {...env, RBEE_HOME: home}, timeout: 60_000});
  t.is(pull.exitCode, 1, 'a plain pull reports the damage too');
  t.regex(String(pull.stderr), /damaged cache entry .*run `rbee model pull --force hf:org\/repo:tiny\.gguf`/);

  const forced = await rbee(['--json', 'model', 'pull', '--force', ref], {env: {...env, RBEE_HOME: home}, timeout: 60_000});
  t.is(forced.exitCode, 0, String(forced.stderr));
  t.true((await fs.readFile(file)).equals(model));
  t.like(await readCacheChecksum(file), {sha256: modelSha256, size: model.length});
  t.is((await resolveModel(ref, {modelsDir: path.join(home, 'models'), env})).path, file);
});

test('a same-size corruption is caught by the hash: at once when the mtime moved, and always by model pull', async t => {
  const server = await hub(t, {advertise: true});
  const home = tempHome();
  const env = {RBEE_HF_ENDPOINT: server.url};
  const file = await cachedPath(home);
  await resolveModel(ref, {modelsDir: path.join(home, 'models'), env});
  const original = await fs.stat(file);
  const bytes = await fs.readFile(file);
  bytes.writeUInt8(bytes.readUInt8(bytes.length - 1) ^ 0xff, bytes.length - 1);
  await fs.writeFile(file, bytes);

  const moved = await t.throwsAsync(resolveModel(ref, {modelsDir: path.join(home, 'models'), env}), {instanceOf: RbeeError});
  t.regex(moved?.message ?? '', /its sha256 is [0-9a-f]{64}, [0-9a-f]{64} was downloaded; run `rbee model pull --force/);

  // Same size and mtime put back: the cheap check on use cannot tell, a pull hashes it whole.
  await fs.utimes(file, original.atime, original.mtime);
  await t.notThrowsAsync(resolveModel(ref, {modelsDir: path.join(home, 'models'), env}));
  const pull = await rbee(['model', 'pull', ref], {env: {...env, RBEE_HOME: home}, timeout: 60_000});
  t.is(pull.exitCode, 1);
  t.regex(String(pull.stderr), /damaged cache entry/);
});

test('a whole file whose mtime moved is hashed once and trusted again', async t => {
  const server = await hub(t, {advertise: true});
  const home = tempHome();
  const env = {RBEE_HF_ENDPOINT: server.url};
  const file = await cachedPath(home);
  await resolveModel(ref, {modelsDir: path.join(home, 'models'), env});
  const later = new Date(Date.now() + 60_000);
  await fs.utimes(file, later, later);
  await resolveModel(ref, {modelsDir: path.join(home, 'models'), env});
  t.is((await readCacheChecksum(file))?.mtime_ms, (await fs.stat(file)).mtimeMs);
  t.is(server.requests.filter(request => request.url === '/cdn/blob').length, 1, 'downloaded once only');
});
