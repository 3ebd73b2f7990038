/**
 * A worker's own HTTP server answers only with the key derived from the secret its hive gave it;
 * a coordinator reaches its shards with their keys. Real worker servers on 127.0.0.1.
 */
import type {AddressInfo} from 'node:net';
import test from 'ava';
import {defineAdapter, type AdapterContext} from '../../src/adapters/adapter-api.js';
import {RbeeError} from '../../src/errors.js';
import {workerKeyOf} from '../../src/http/secrets.js';
import {groupHeartbeatFields} from '../../src/worker/group-heartbeat.js';
import {groupSecretVariable, shardKeysVariable, takeWorkerCredentials, workerSecretVariable} from '../../src/worker/worker-auth.js';
import {WorkerRuntime} from '../../src/worker/worker-runtime.js';
import {createWorkerServer} from '../../src/worker/worker-server.js';
import {rbee} from '../helpers/rbee-process.js';

test('the credentials are read from the environment and taken out of it, so engines do not inherit them', t => {
  const env: NodeJS.ProcessEnv = {
    [workerSecretVariable]: 's3cret',
    [shardKeysVariable]: JSON.stringify({'group-1-1': 'k1'}),
    [groupSecretVariable]: 'launch-secret',
    PATH: '/bin',
  };
  const credentials = takeWorkerCredentials(env);
  t.deepEqual(credentials, {secret: 's3cret', key: workerKeyOf('s3cret'), shardKeys: {'group-1-1': 'k1'}, groupSecret: 'launch-secret'});
  t.deepEqual(env, {PATH: '/bin'});
  t.not(credentials.key, 's3cret', 'the key is not the secret: a holder of the key cannot forge heartbeats');
  t.deepEqual(takeWorkerCredentials({}), {secret: '', key: null, shardKeys: {}, groupSecret: ''});
  t.throws(() => takeWorkerCredentials({[shardKeysVariable]: '{"a": 1}'}), {instanceOf: RbeeError, message: new RegExp(shardKeysVariable)});
});

const echo = defineAdapter({
  name: 'test:echo',
  type: 'echo',
  start: async () => undefined,
  infer: async request => ({text: request.prompt, tokensGenerated: 1, promptTokens: 1, finishReason: 'stop'}),
  stop: async () => undefined,
});

async function workerServer(t: {teardown(fn: () => Promise<void>): void}, id: string, key: string) {
  const runtime = new WorkerRuntime({workerId: id, modelName: 'm', device: 'cpu', parallel: 1, maxQueue: 1}, echo, {} as AdapterContext);
  runtime.markReady();
  const app = createWorkerServer(runtime, {key});
  await app.listen({host: '127.0.0.1', port: 0});
  t.teardown(() => app.close());
  return `http://127.0.0.1:${(app.server.address() as AddressInfo).port}`;
}

test('every route of a keyed worker answers 401 without its key, and serves with it', async t => {
  const key = workerKeyOf('secret-one');
  const url = await workerServer(t, 'worker-1', key);
  for (const [method, route] of [
    ['GET', '/health'],
    ['GET', '/v1/models'],
    ['POST', '/v1/infer'],
    ['POST', '/v1/chat/completions'],
    ['GET', '/nope'],
  ] as const) {
    const response = await fetch(`${url}${route}`, {method, headers: {'content-type': 'application/json'}, ...(method === 'POST' ? {body: '{}'} : {})});
    t.is(response.status, 401, `${method} ${route}`);
    t.is(((await response.json()) as {error: {code: string}}).error.code, 'unauthorized');
  }
  const wrong = await fetch(`${url}/health`, {headers: {authorization: `Bearer ${key.slice(0, -1)}x`}});
  t.is(wrong.status, 401);
  const right = await fetch(`${url}/v1/infer`, {
    method: 'POST',
    headers: {'content-type': 'application/json', authorization: `Bearer ${key}`},
    body: '{"prompt":"hi"}',
  });
  t.is(right.status, 200);
  t.is(((await right.json()) as {text: string}).text, 'hi');
});

test('a coordinator reaches its shards with their keys; without them a shard reads as unhealthy', async t => {
  const key = workerKeyOf('shard-secret');
  const url = await workerServer(t, 'group-1-1', key);
  const membership = {
    group_id: 'group-1',
    role: 'coordinator' as const,
    coordinator: 'group-1-0',
    devices: ['cpu', 'cpu'],
    endpoint: null,
    shards: [{worker_id: 'group-1-1', device: 'cpu', url, endpoint: '127.0.0.1:6000'}],
  };
  t.like(await groupHeartbeatFields(membership, true, null, 2_000, {'group-1-1': key}), {
    group_health: 'healthy',
    shard_workers: [{worker_id: 'group-1-1', status: 'healthy'}],
  });
  t.like(await groupHeartbeatFields(membership, true, null, 2_000, {}), {
    group_health: 'degraded',
    shard_workers: [{worker_id: 'group-1-1', status: 'unhealthy'}],
  });
});

test('a worker started without a secret (standalone, no hive) refuses to serve beyond loopback', async t => {
  const result = await rbee(
    ['worker', 'run', '--type', 'llamacpp', '--worker-id', 'solo', '--model-path', '/nonexistent.gguf', '--host', '0.0.0.0', '--port', '0'],
    {env: {RBEE_WORKER_SECRET: ''}, timeout: 30_000},
  );
  t.is(result.exitCode, 2, String(result.stderr));
  t.regex(String(result.stderr), /--host 0\.0\.0\.0: a worker without RBEE_WORKER_SECRET \(and so without a key\) serves loopback only/);
});
