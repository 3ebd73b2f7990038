/**
 * The hive's answers with real worker processes running third-party adapters from test/fixtures
 * (any folder serves as their model): requests spread over workers, a hung worker's request goes
 * to its twin at once, streamed requests over the limit get 503 + Retry-After, bodies the hive
 * must not relay are refused at the hive, an engine that never gets ready fails, and `spawn
 * --wait` says why a worker fails while it still waits.
 */
import {spawn} from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import {fileURLToPath} from 'node:url';
import test from 'ava';
import {InferResponseSchema, OpenAiErrorBodySchema, WorkerInfoSchema, type WorkerInfo} from '../../src/protocol/wire.js';
import {isAlive, waitFor} from '../helpers/process-tree.js';
import {getJson, postJson, rbeeBin, startHive, tempHome, type RunningHive} from '../helpers/rbee-process.js';

const fixtures = fileURLToPath(new URL('../fixtures/', import.meta.url));
const project = tempHome('rbee-honest-');
fs.writeFileSync(
  path.join(project, 'rbee.config.json'),
  JSON.stringify({
    adapters: [
      [path.join(fixtures, 'adapter-words', 'index.js'), {tokenMs: 20}],
      path.join(fixtures, 'bad-adapters', 'throwing-start.js'),
      path.join(fixtures, 'bad-adapters', 'chatty-never-ready.js'),
    ],
  }),
);
/** Any folder is a model to these adapters; each test gets its own model, so routing is per test. */
function model(name: string): string {
  const folder = path.join(project, 'models', name);
  fs.mkdirSync(folder, {recursive: true});
  return folder;
}

let hive: RunningHive;
const stopped: number[] = [];

test.before(async () => {
  // --worker-timeout: how long a request waits before the hive asks the worker's /health (and as
  // long again for that answer) before it calls the worker hung. Short enough for the SIGSTOP test
  // to answer in seconds, long enough that a worker slowed by a loaded machine is not called hung
  // (at 300 ms, CI once sent a sequential request to the twin of a worker that was only slow).
  // --missed-heartbeats 30 (9 s): the hung worker's requests must reach its twin well before its
  // missed heartbeats would fail it.
  hive = await startHive({
    cwd: project,
    args: ['--heartbeat-interval', '300', '--missed-heartbeats', '30', '--worker-timeout', '1500', '--load-stall-timeout', '3000'],
  });
});

test.after.always(async () => {
  for (const pid of stopped) {
    if (isAlive(pid)) {
      process.kill(pid, 'SIGCONT');
    }
  }
  await hive?.stop();
});

async function worker(id: string): Promise<WorkerInfo> {
  return WorkerInfoSchema.parse((await getJson(`${hive.url}/v1/workers/${id}`)).body);
}

async function spawnReady(body: Record<string, unknown>): Promise<WorkerInfo> {
  const spawned = await postJson(`${hive.url}/v1/workers`, {type: 'words', restart: 'never', ...body});
  if (spawned.status !== 201) {
    throw new Error(`spawn failed: ${JSON.stringify(spawned.body)}`);
  }
  const id = spawned.body.worker_id as string;
  await waitFor(async () => (await worker(id)).state === 'ready', 60_000, `${id} ready`);
  return worker(id);
}

test.serial('sequential requests spread over the workers of a model (round-robin among the least busy)', async t => {
  const modelPath = model('spread');
  const workers = await Promise.all([spawnReady({model: modelPath}), spawnReady({model: modelPath})]);
  const answeredBy: string[] = [];
  for (let index = 0; index < 6; index++) {
    const answer = await postJson(`${hive.url}/v1/infer`, {model: 'spread', prompt: 'bees make honey', max_tokens: 2});
    t.is(answer.status, 200, JSON.stringify(answer.body));
    answeredBy.push(InferResponseSchema.parse(answer.body).worker_id);
  }
  for (const spawned of workers) {
    t.is(answeredBy.filter(id => id === spawned.worker_id).length, 3, `each worker takes its turn: ${answeredBy.join(', ')}`);
  }
});

test.serial('a worker that hangs (SIGSTOP): requests it got go to its twin at once, not after its missed heartbeats', async t => {
  const modelPath = model('hang');
  const [hung, twin] = await Promise.all([spawnReady({model: modelPath}), spawnReady({model: modelPath})]);
  process.kill(hung!.pid!, 'SIGSTOP');
  stopped.push(hung!.pid!);
  const started = Date.now();
  // Two at once: one of them is routed to the hung worker whatever the rotation.
  const answers = await Promise.all([1, 2].map(() => postJson(`${hive.url}/v1/infer`, {model: 'hang', prompt: 'bees make honey', max_tokens: 2})));
  const took = Date.now() - started;
  t.log(`both answered after ${took} ms`);
  for (const answer of answers) {
    t.is(answer.status, 200, JSON.stringify(answer.body));
    t.is(InferResponseSchema.parse(answer.body).worker_id, twin!.worker_id);
  }
  t.true(took < 8_000, `answered in ${took} ms, before the 9 s of missed heartbeats`);
  if (isAlive(hung!.pid!)) {
    process.kill(hung!.pid!, 'SIGCONT');
  }
});

test.serial('a streamed request over the queue limit gets 503 + Retry-After from the hive, like a plain one', async t => {
  const modelPath = model('full');
  await spawnReady({model: modelPath, parallel: 1, max_queue: 0});
  const first = new AbortController();
  t.teardown(() => first.abort());
  const running = await fetch(`${hive.url}/v1/infer`, {
    method: 'POST',
    headers: {'content-type': 'application/json'},
    signal: first.signal,
    body: JSON.stringify({model: 'full', prompt: 'bees make honey', max_tokens: 10_000, stream: true}),
  });
  t.is(running.status, 200);
  await running.body!.getReader().read();
  const refused = await fetch(`${hive.url}/v1/infer`, {
    method: 'POST',
    headers: {'content-type': 'application/json'},
    signal: AbortSignal.timeout(30_000),
    body: JSON.stringify({model: 'full', prompt: 'me too', stream: true}),
  });
  t.is(refused.status, 503);
  t.is(refused.headers.get('retry-after'), '1');
  t.regex(await refused.text(), /queue is full/);
  first.abort();
});

test.serial('a 200,000-deep JSON body is a 400 at the hive, not a 502 from a stack overflow', async t => {
  await spawnReady({model: model('deep')});
  const deep = `${'['.repeat(200_000)}${']'.repeat(200_000)}`;
  for (const [route, body] of [
    ['/v1/infer', `{"model":"deep","prompt":"x","extra":${deep}}`],
    ['/v1/chat/completions', `{"model":"deep","messages":[{"role":"user","content":"x"}],"metadata":${deep}}`],
    ['/v1/completions', `{"model":"deep","prompt":"x","logit_bias":${deep}}`],
  ] as const) {
    const answer = await postJson(`${hive.url}${route}`, body);
    t.is(answer.status, 400, `${route}: ${JSON.stringify(answer.body).slice(0, 300)}`);
    t.notRegex(JSON.stringify(answer.body), /call stack/);
  }
});

test.serial('unknown fields: POST /v1/groups {"dry_run": true} is a 400 naming it and spawns nothing; OpenAI routes answer OpenAI-shaped errors', async t => {
  const before = (await getJson(`${hive.url}/v1/groups?all=1`)).body.groups.length as number;
  const group = await postJson(`${hive.url}/v1/groups`, {model: model('group'), devices: ['cpu', 'cpu'], type: 'words', dry_run: true});
  t.is(group.status, 400);
  t.like(group.body, {error: {code: 'invalid_request'}});
  t.regex(group.body.error.message, /`dry_run`: unknown field/);
  t.is((await getJson(`${hive.url}/v1/groups?all=1`)).body.groups.length, before);

  const missing = await postJson(`${hive.url}/v1/chat/completions`, {model: 'no-such-model', messages: [{role: 'user', content: 'x'}]});
  t.is(missing.status, 404);
  t.like(OpenAiErrorBodySchema.parse(missing.body).error, {type: 'not_found_error', param: null, code: 'model_not_found'});
  const unknown = await postJson(`${hive.url}/v1/completions`, {model: 'deep', prompt: 'x', best_of: 3});
  t.like(OpenAiErrorBodySchema.parse(unknown.body).error, {type: 'invalid_request_error', param: 'best_of'});
  // rbee's own routes keep rbee's shape.
  const infer = await postJson(`${hive.url}/v1/infer`, {model: 'deep', prompt: 'x', bogus: 1});
  t.deepEqual(Object.keys(infer.body.error).sort(), ['code', 'message']);
});

test.serial('an engine that logs but never gets ready fails at its ready timeout (its output is no progress)', async t => {
  const spawned = await postJson(`${hive.url}/v1/workers`, {model: model('chatty'), type: 'chatty-never-ready', restart: 'never', ready_timeout_ms: 1_500});
  t.is(spawned.status, 201, JSON.stringify(spawned.body));
  const id = spawned.body.worker_id as string;
  await waitFor(async () => (await worker(id)).state === 'failed', 30_000, `${id} to fail`);
  const failed = await worker(id);
  t.regex(failed.reason ?? '', /adapter acme:chatty-never-ready failed to start: not ready after 1\.5 s/);
});

test.serial('spawn --wait under the default restart policy says why the worker failed as soon as it is known', async t => {
  const child = spawn(process.execPath, [rbeeBin, 'worker', 'spawn', '--type', 'throwing-start', '--model', model('throwing'), '--wait', '--timeout', '600'], {
    env: {...process.env, RBEE_HIVE_URL: hive.url, RBEE_HOME: hive.home},
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stderr = '';
  child.stderr.on('data', chunk => {
    stderr += String(chunk);
  });
  const exited = new Promise(resolve => child.once('exit', resolve));
  t.teardown(() => {
    child.kill('SIGKILL');
  });
  await waitFor(() => /the hive restarts it/.test(stderr) || child.exitCode !== null, 60_000, `the failure's cause on stderr (stderr: ${stderr})`);
  t.is(child.exitCode, null, `said while still waiting, not at the end (stderr: ${stderr})`);
  t.regex(stderr, /worker (worker-[0-9a-f]+) failed: .*adapter acme:throwing-start failed to start: engine binary \/opt\/acme\/engine is missing/);
  const id = /worker (worker-[0-9a-f]+) failed/.exec(stderr)![1]!;
  child.kill('SIGINT');
  await exited;
  const response = await fetch(`${hive.url}/v1/workers/${id}`, {method: 'DELETE', signal: AbortSignal.timeout(30_000)});
  t.is(response.status, 200);
});
