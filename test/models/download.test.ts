import {createHash, randomBytes} from 'node:crypto';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import test from 'ava';
import {RbeeError} from '../../src/errors.js';
import {downloadFile, type DownloadProgress} from '../../src/models/download.js';
import {sendBytes, startFixtureServer} from '../helpers/http-fixture-server.js';

const body = randomBytes(256 * 1024);
const bodySha256 = createHash('sha256').update(body).digest('hex');

async function tempDir(t: {teardown(fn: () => Promise<void>): void}): Promise<string> {
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'rbee-download-'));
  t.teardown(() => fs.rm(dir, {recursive: true, force: true}));
  return dir;
}

async function exists(file: string): Promise<boolean> {
  return fs.access(file).then(
    () => true,
    () => false,
  );
}

test('downloads a file, checks the advertised sha256 and reports progress', async t => {
  t.timeout(20_000);
  const server = await startFixtureServer((request, response) => sendBytes(request, response, body, {headers: {'x-linked-etag': `"${bodySha256}"`}}));
  t.teardown(() => server.close());
  const dir = await tempDir(t);
  const destination = path.join(dir, 'sub', 'file.bin');
  const progress: DownloadProgress[] = [];

  const result = await downloadFile({url: `${server.url}/file.bin`, destination, onProgress: p => progress.push(p)});

  t.deepEqual(result, {path: destination, sha256: bodySha256, size: body.length, checkedAgainst: 'server'});
  t.true((await fs.readFile(destination)).equals(body));
  t.false(await exists(`${destination}.part`));
  t.deepEqual(progress.at(-1), {phase: 'downloading', done: body.length, total: body.length});
  t.true(progress.every(p => p.phase === 'downloading' && p.total === body.length));
});

test('resumes with a Range request after the connection drops', async t => {
  t.timeout(20_000);
  let calls = 0;
  const server = await startFixtureServer((request, response) => {
    calls++;
    sendBytes(request, response, body, {
      headers: {etag: `"${bodySha256}"`},
      ...(calls === 1 ? {dropAfterBytes: 100 * 1024} : {}),
    });
  });
  t.teardown(() => server.close());
  const dir = await tempDir(t);
  const destination = path.join(dir, 'file.bin');

  const result = await downloadFile({url: `${server.url}/file.bin`, destination, retryDelayMs: 10});

  t.is(server.requests.length, 2);
  t.is(server.requests[0]?.headers.range, undefined);
  const range = /^bytes=(\d+)-$/.exec(server.requests[1]?.headers.range ?? '');
  t.truthy(range, 'the second attempt asks for the rest');
  const offset = Number(range?.[1]);
  t.true(offset > 0 && offset <= 100 * 1024, `resumed at ${offset}`);
  t.is(result.sha256, bodySha256);
  t.true((await fs.readFile(destination)).equals(body));
});

test('starts over when the server ignores the Range header', async t => {
  t.timeout(20_000);
  const server = await startFixtureServer((request, response) => sendBytes(request, response, body, {honorRange: false}));
  t.teardown(() => server.close());
  const dir = await tempDir(t);
  const destination = path.join(dir, 'file.bin');
  // Garbage in the part file: keeping it would break the checksum.
  await fs.writeFile(`${destination}.part`, Buffer.alloc(5000, 7));

  const result = await downloadFile({url: `${server.url}/file.bin`, destination, expectedSha256: bodySha256});

  t.is(server.requests[0]?.headers.range, 'bytes=5000-');
  t.is(result.sha256, bodySha256);
  t.is(result.size, body.length);
  t.true((await fs.readFile(destination)).equals(body));
});

test('a complete part file answered with 416 is verified and kept', async t => {
  t.timeout(20_000);
  const server = await startFixtureServer((request, response) => sendBytes(request, response, body));
  t.teardown(() => server.close());
  const dir = await tempDir(t);
  const destination = path.join(dir, 'file.bin');
  await fs.writeFile(`${destination}.part`, body);

  const result = await downloadFile({url: `${server.url}/file.bin`, destination, expectedSha256: bodySha256});

  t.is(server.requests.length, 1);
  t.is(server.requests[0]?.headers.range, `bytes=${body.length}-`);
  t.is(result.sha256, bodySha256);
  t.true((await fs.readFile(destination)).equals(body));
});

test('a checksum mismatch fails and leaves no file behind', async t => {
  t.timeout(20_000);
  const server = await startFixtureServer((request, response) => sendBytes(request, response, body, {headers: {'x-linked-etag': `"${'0'.repeat(64)}"`}}));
  t.teardown(() => server.close());
  const dir = await tempDir(t);
  const destination = path.join(dir, 'file.bin');

  const advertised = await t.throwsAsync(downloadFile({url: `${server.url}/a.bin`, destination}), {instanceOf: RbeeError});
  t.is(advertised?.code, 'checksum_mismatch');
  t.true(advertised?.message.includes('0'.repeat(64)));

  const explicit = await t.throwsAsync(downloadFile({url: `${server.url}/b.bin`, destination, expectedSha256: 'f'.repeat(64)}), {instanceOf: RbeeError});
  t.is(explicit?.code, 'checksum_mismatch');
  t.deepEqual(await fs.readdir(dir), []);
});

test('a 404 is model_not_found naming the URL', async t => {
  t.timeout(20_000);
  const server = await startFixtureServer((_request, response) => {
    response.writeHead(404).end('nope');
  });
  t.teardown(() => server.close());
  const dir = await tempDir(t);
  const url = `${server.url}/missing.gguf`;

  const error = await t.throwsAsync(downloadFile({url, destination: path.join(dir, 'x')}), {instanceOf: RbeeError});

  t.is(error?.code, 'model_not_found');
  t.true(error?.message.includes(url));
  t.is(server.requests.length, 1, '404 is not retried');
});

test('a persistent server error is download_failed with the status, after retries', async t => {
  t.timeout(20_000);
  const server = await startFixtureServer((_request, response) => {
    response.writeHead(503).end('busy');
  });
  t.teardown(() => server.close());
  const dir = await tempDir(t);
  const url = `${server.url}/busy.gguf`;

  const error = await t.throwsAsync(downloadFile({url, destination: path.join(dir, 'x'), retries: 2, retryDelayMs: 5}), {
    instanceOf: RbeeError,
  });

  t.is(error?.code, 'download_failed');
  t.regex(error?.message ?? '', /HTTP 503/);
  t.true(error?.message.includes(url));
  t.truthy(error?.cause);
  t.is(server.requests.length, 3);
});

test('an unreachable server is download_failed with a cause', async t => {
  t.timeout(20_000);
  const server = await startFixtureServer(() => {});
  const url = `${server.url}/gone.gguf`;
  await server.close();
  const dir = await tempDir(t);

  const error = await t.throwsAsync(downloadFile({url, destination: path.join(dir, 'x'), retries: 1, retryDelayMs: 5}), {
    instanceOf: RbeeError,
  });

  t.is(error?.code, 'download_failed');
  t.true(error?.message.includes(url));
  t.truthy(error?.cause);
});
