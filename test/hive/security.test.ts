/** Token, body limits and per-worker secrets, against a real hive bound to loopback. */
import http from 'node:http';
import test from 'ava';
import {getJson, postJson, rbee, startHive, type RunningHive} from '../helpers/rbee-process.js';

const token = 'a-test-token-of-enough-length';
let hive: RunningHive;

test.before(async () => {
  hive = await startHive({env: {RBEE_TOKEN: token}});
});

test.after.always(async () => {
  await hive?.stop();
});

test.serial('with a token configured, every route but /health and heartbeats needs it', async t => {
  t.is((await getJson(`${hive.url}/health`)).status, 200);
  for (const path of ['/v1/workers', '/v1/status', '/v1/models', '/metrics']) {
    const response = await fetch(`${hive.url}${path}`);
    t.is(response.status, 401, path);
    t.is(((await response.json()) as {error: {code: string}}).error.code, 'unauthorized');
  }
  const wrong = await fetch(`${hive.url}/v1/workers`, {headers: {authorization: 'Bearer nope'}});
  t.is(wrong.status, 401);
  const right = await fetch(`${hive.url}/v1/workers`, {headers: {authorization: `Bearer ${token}`}});
  t.is(right.status, 200);
  const spawn = await postJson(`${hive.url}/v1/workers`, {model: 'default'});
  t.is(spawn.status, 401, 'no spawning without the token');
});

test.serial('the CLI sends the token from RBEE_TOKEN or --token', async t => {
  const without = await rbee(['status'], {hive, env: {RBEE_TOKEN: ''}});
  t.is(without.exitCode, 1);
  t.regex(String(without.stderr), /unauthorized/);
  const withFlag = await rbee(['--token', token, '--json', 'status'], {hive, env: {RBEE_TOKEN: ''}});
  t.is(withFlag.exitCode, 0, String(withFlag.stderr));
});

test.serial('a body over the size limit is a 413, and the hive keeps serving', async t => {
  // Announce 9 MiB and send a little: the hive refuses on the length alone, before reading it.
  const status = await new Promise<number>((resolve, reject) => {
    const request = http.request(
      `${hive.url}/v1/infer`,
      {
        method: 'POST',
        headers: {'content-type': 'application/json', 'content-length': String(9 * 1024 * 1024), authorization: `Bearer ${token}`},
      },
      response => {
        response.resume();
        resolve(response.statusCode ?? 0);
      },
    );
    request.on('error', reject);
    request.write('{"prompt": "');
  });
  t.is(status, 413);
  t.is((await getJson(`${hive.url}/health`)).status, 200);
});

test.serial('heartbeats are judged by the worker secret, not the token', async t => {
  const response = await postJson(`${hive.url}/v1/heartbeat`, {worker_id: 'worker-ghost', status: 'ready'});
  t.is(response.status, 404, 'reaches the heartbeat route (then: unknown worker)');
});
