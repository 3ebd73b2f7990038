/**
 * Bad input of every kind gets a clear 4xx (or CLI error) that names the problem, changes
 * nothing, and leaves the hive serving.
 */
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import test from 'ava';
import {getJson, postJson, rbee, startHive, tempHome, type RunningHive} from '../helpers/rbee-process.js';

let hive: RunningHive;

test.before(async () => {
  hive = await startHive();
});

test.after.always(async () => {
  await hive?.stop();
});

test.afterEach.always(async t => {
  // Whatever the test sent, the hive still serves and started no worker.
  const health = await getJson(`${hive.url}/health`);
  t.is(health.status, 200);
  const workers = await getJson(`${hive.url}/v1/workers?all=1`);
  t.deepEqual(workers.body.workers, []);
});

for (const route of ['/v1/infer', '/v1/workers', '/v1/heartbeat', '/v1/chat/completions']) {
  test.serial(`malformed JSON on ${route} is a 400 invalid_json`, async t => {
    const response = await postJson(`${hive.url}${route}`, '{"prompt": "unterminated');
    t.is(response.status, 400);
    t.is(response.body.error.code, 'invalid_json');
    t.regex(response.body.error.message, /JSON/);
  });
}

test.serial('a field of the wrong type is named', async t => {
  const response = await postJson(`${hive.url}/v1/infer`, {prompt: 'hi', max_tokens: 'many'});
  t.is(response.status, 400);
  t.is(response.body.error.code, 'invalid_request');
  t.regex(response.body.error.message, /`max_tokens`/);
});

test.serial('unknown model: 404 that names it', async t => {
  const response = await postJson(`${hive.url}/v1/chat/completions`, {model: 'no-such-model', messages: [{role: 'user', content: 'hi'}]});
  t.is(response.status, 404);
  t.is(response.body.error.code, 'model_not_found');
  t.regex(response.body.error.message, /no-such-model/);
});

test.serial('spawn with a missing model file: 404 naming the path, CLI exit code 4', async t => {
  const missing = path.join(hive.home, 'nope.gguf');
  const response = await postJson(`${hive.url}/v1/workers`, {model: missing});
  t.is(response.status, 404);
  t.is(response.body.error.code, 'model_not_found');
  t.true(response.body.error.message.includes(missing));
  const cli = await rbee(['--json', 'worker', 'spawn', '--model', missing], {hive});
  t.is(cli.exitCode, 4);
  t.is(JSON.parse(String(cli.stdout)).error.code, 'model_not_found');
  t.regex(String(cli.stderr), /model file not found/);
});

test.serial('spawn with a file that is not GGUF is refused', async t => {
  const notGguf = path.join(hive.home, 'notes.gguf');
  fs.writeFileSync(notGguf, 'these are not weights');
  const response = await postJson(`${hive.url}/v1/workers`, {model: notGguf});
  t.is(response.status, 400);
  t.regex(response.body.error.message, /not a GGUF file/);
});

test.serial('spawn with an unknown device: 400 naming the device', async t => {
  const malformed = await postJson(`${hive.url}/v1/workers`, {model: 'default', device: 'tpu:0'});
  t.is(malformed.status, 400);
  t.regex(malformed.body.error.message, /`device`/);
  const absent = await postJson(`${hive.url}/v1/workers`, {model: 'default', device: 'cuda:7'});
  t.is(absent.status, 400);
  t.is(absent.body.error.code, 'device_unknown');
  t.regex(absent.body.error.message, /cuda:7/);
  const cli = await rbee(['worker', 'spawn', '--model', 'default', '--device', 'cuda:7'], {hive});
  t.not(cli.exitCode, 0);
  t.regex(String(cli.stderr), /unknown device "cuda:7"/);
});

test.serial('spawn with an unknown worker type is refused', async t => {
  const response = await postJson(`${hive.url}/v1/workers`, {model: 'default', type: 'warp-drive'});
  t.is(response.status, 400);
  t.regex(response.body.error.message, /unknown worker type "warp-drive"/);
});

test.serial('spoofed heartbeats are rejected', async t => {
  const unknown = await postJson(`${hive.url}/v1/heartbeat`, {worker_id: 'worker-ghost', status: 'ready'});
  t.is(unknown.status, 404);
  t.is(unknown.body.error.code, 'worker_not_found');
  const invalid = await postJson(`${hive.url}/v1/heartbeat`, {worker_id: 'worker-ghost', status: 'sleeping', vram_used: -1});
  t.is(invalid.status, 400);
  t.regex(invalid.body.error.message, /`status`/);
  t.regex(invalid.body.error.message, /`vram_used`/);
});

test.serial('unknown routes and stopping unknown workers are 404s', async t => {
  t.is((await getJson(`${hive.url}/v2/nothing`)).status, 404);
  const cli = await rbee(['worker', 'stop', 'worker-nobody'], {hive});
  t.is(cli.exitCode, 4);
  t.regex(String(cli.stderr), /no worker "worker-nobody"/);
});

test.serial('a busy port is a clear error', async t => {
  const blocker = net.createServer();
  await new Promise<void>(resolve => blocker.listen({host: '127.0.0.1', port: 0}, resolve));
  const port = (blocker.address() as net.AddressInfo).port;
  try {
    const cli = await rbee(['hive', 'start', '--port', String(port)], {env: {RBEE_HOME: tempHome()}, timeout: 20_000});
    t.is(cli.exitCode, 1);
    t.regex(String(cli.stderr), new RegExp(`port ${port} on 127.0.0.1 is already in use`));
  } finally {
    blocker.close();
  }
});

test.serial('binding beyond loopback without a token is refused', async t => {
  const cli = await rbee(['hive', 'start', '--host', '0.0.0.0', '--port', '0'], {env: {RBEE_HOME: tempHome(), RBEE_TOKEN: ''}, timeout: 20_000});
  t.not(cli.exitCode, 0);
  t.regex(String(cli.stderr), /refusing to bind 0\.0\.0\.0 without a token/);
});

test.serial('the CLI names a bad flag and exits 2', async t => {
  const cli = await rbee(['worker', 'spawn', '--model', 'default', '--threads', 'lots'], {hive});
  t.is(cli.exitCode, 2);
  t.regex(String(cli.stderr), /--threads must be an integer/);
});

test.serial('no hive: the CLI says so and exits 3', async t => {
  const cli = await rbee(['--json', 'status'], {env: {RBEE_HIVE_URL: 'http://127.0.0.1:9'}});
  t.is(cli.exitCode, 3);
  t.is(JSON.parse(String(cli.stdout)).error.code, 'hive_unreachable');
});
