/**
 * The hive client as a user gets it: imported through the package's `rbee/protocol` export (the
 * built dist/, resolved by package.json `exports`), driving a real hive on 127.0.0.1 with a plugin
 * worker (the words adapter: any folder is its model, one token per prompt word).
 */
import fs from 'node:fs';
import http from 'node:http';
import type {AddressInfo} from 'node:net';
import path from 'node:path';
import {fileURLToPath} from 'node:url';
import test from 'ava';
import {HiveClient, RbeeError, hiveRoutes, type HiveEvent} from 'rbee/protocol';
import {startFixtureServer} from '../helpers/http-fixture-server.js';
import {waitFor} from '../helpers/process-tree.js';
import {startHive, tempHome, type RunningHive} from '../helpers/rbee-process.js';

const token = 'client-test-token-0123456789';
const fixtures = fileURLToPath(new URL('../fixtures/', import.meta.url));
const project = tempHome('rbee-client-');
fs.writeFileSync(path.join(project, 'rbee.config.json'), JSON.stringify({adapters: [[path.join(fixtures, 'adapter-words', 'index.js'), {tokenMs: 5}]]}));
const model = path.join(project, 'models', 'bees');
fs.mkdirSync(model, {recursive: true});

let hive: RunningHive;
let client: HiveClient;

test.before(async () => {
  hive = await startHive({cwd: project, env: {RBEE_TOKEN: token}, args: ['--heartbeat-interval', '300']});
  client = new HiveClient({url: hive.url, token});
});

test.after.always(async () => {
  await hive?.stop();
});

test.serial('typed answers: status, a spawned worker followed until ready, inference plain and streamed on both APIs', async t => {
  const status = await client.status();
  t.is(status.url, hive.url);
  t.is(status.pid, hive.pid);

  const spawned = await client.spawnWorker({model, type: 'words', restart: 'never'});
  t.is(spawned.state, 'starting');
  t.is(spawned.group_id, null, 'defaults of the wire schema applied');
  await waitFor(async () => (await client.getWorker(spawned.worker_id)).state === 'ready', 60_000, 'the worker ready');
  const list = await client.listWorkers();
  t.deepEqual(
    list.workers.map(worker => worker.worker_id),
    [spawned.worker_id],
  );
  t.deepEqual(
    (await client.models()).data.map(entry => entry.id),
    [path.basename(model)],
  );

  const answer = await client.infer({prompt: 'bees make honey', max_tokens: 3});
  t.like(answer, {worker_id: spawned.worker_id, text: 'bees make honey ', tokens_generated: 3, finish_reason: 'length'});

  const streamed = [];
  for await (const event of client.inferStream({prompt: 'bees make honey', max_tokens: 2})) {
    streamed.push(event);
  }
  t.deepEqual(
    streamed.map(event => event.type),
    ['token', 'token', 'done'],
  );
  t.deepEqual(
    streamed.flatMap(event => (event.type === 'token' ? [event.text] : [])),
    ['bees ', 'make '],
  );

  const chat = await client.chatCompletion({model: path.basename(model), messages: [{role: 'user', content: 'hello there'}], max_tokens: 2});
  t.is(chat.choices[0]?.message.content, 'hello there ');
  let text = '';
  let chunks = 0;
  for await (const chunk of client.completionStream({model: path.basename(model), prompt: 'one two three', max_tokens: 3})) {
    chunks++;
    text += chunk.choices[0]?.text ?? '';
  }
  t.is(text, 'one two three ');
  t.true(chunks >= 3);

  const stopped = await client.stopWorker(spawned.worker_id, {timeoutMs: 60_000});
  t.is(stopped.state, 'stopped');
});

test.serial("the hive's errors keep their code, status and message; no token is the hive's 401", async t => {
  const missing = await t.throwsAsync(client.getWorker('worker-nope'), {instanceOf: RbeeError});
  t.is(missing.code, 'worker_not_found');
  t.is(missing.status, 404);
  t.regex(missing.message, /worker-nope/);

  const bad = await t.throwsAsync(client.spawnWorker({model, device: 'gpu:0', type: 'words'}), {instanceOf: RbeeError});
  t.is(bad.code, 'invalid_request');
  t.is(bad.status, 400);
  t.regex(bad.message, /device/);

  // The OpenAI routes answer in OpenAI's shape: the same code, and the field at fault.
  const openAi = await t.throwsAsync(
    client.chatCompletion({model: path.basename(model), messages: [{role: 'user', content: 'hi'}], tools: [{type: 'function'}]}),
    {instanceOf: RbeeError},
  );
  t.is(openAi.code, 'invalid_request');
  t.is(openAi.status, 400);
  t.is(openAi.field, 'tools');

  const anonymous = new HiveClient({url: hive.url});
  const refused = await t.throwsAsync(anonymous.status(), {instanceOf: RbeeError});
  t.is(refused.code, 'unauthorized');
  t.is(refused.status, 401);
});

test.serial('the event stream: a typed snapshot first, then the changes as they happen', async t => {
  const controller = new AbortController();
  const events: HiveEvent[] = [];
  const following = (async () => {
    for await (const event of client.events({signal: controller.signal, stallMs: 10_000})) {
      events.push(event);
    }
  })().catch(error => {
    if (!controller.signal.aborted) {
      throw error;
    }
  });
  await waitFor(() => events.length > 0, 10_000, 'the snapshot');
  t.is(events[0]?.type, 'snapshot');
  const spawned = await client.spawnWorker({model, type: 'words', restart: 'never'});
  await waitFor(
    () => events.some(event => event.type === 'worker' && event.worker.worker_id === spawned.worker_id && event.worker.state === 'ready'),
    60_000,
    "the worker's ready event",
  );
  await waitFor(() => events.some(event => event.type === 'heartbeat' && event.heartbeat.worker_id === spawned.worker_id), 10_000, 'a heartbeat event');
  controller.abort();
  await following;
  await client.stopWorker(spawned.worker_id, {timeoutMs: 60_000});
});

test('no hive at the URL: hive_unreachable naming it, with the network error as cause', async t => {
  const server = http.createServer();
  await new Promise<void>(resolve => server.listen(0, '127.0.0.1', resolve));
  const {port} = server.address() as AddressInfo;
  await new Promise(resolve => server.close(resolve));
  const url = `http://127.0.0.1:${port}`;
  const error = await t.throwsAsync(new HiveClient({url}).status(), {instanceOf: RbeeError});
  t.is(error.code, 'hive_unreachable');
  t.true(error.message.includes(url), error.message);
  t.truthy(error.cause);
});

test('a malformed answer is refused, naming the field; so is a malformed event', async t => {
  const server = await startFixtureServer((request, response) => {
    if (request.url === hiveRoutes.events.path) {
      response.writeHead(200, {'content-type': 'text/event-stream'});
      response.end(
        'data: {"type":"heartbeat","at":"2026-01-01T00:00:00Z","worker_id":"w1","heartbeat":{"worker_id":"w1","status":"ready","vram_used":"lots"}}\n\n',
      );
      return;
    }
    response.writeHead(200, {'content-type': 'application/json'});
    response.end(JSON.stringify({version: '0.1.0', pid: 'one', uptime_seconds: 1, url: 'x', workers: {}, models: [], devices: []}));
  });
  t.teardown(() => server.close());
  const fixture = new HiveClient({url: server.url});
  const status = await t.throwsAsync(fixture.status(), {instanceOf: RbeeError});
  t.is(status.code, 'invalid_response');
  t.regex(status.message, /GET \/v1\/status/);
  t.regex(status.message, /`pid`/);
  t.is(status.field, 'pid');
  const event = await t.throwsAsync(
    async () => {
      for await (const _event of fixture.events()) {
        // the first event is malformed
      }
    },
    {instanceOf: RbeeError},
  );
  t.is(event.code, 'invalid_response');
  t.regex(event.message, /`heartbeat\.vram_used`/);
});

test('a stream cut off before its end marker throws instead of passing for a short answer', async t => {
  const server = await startFixtureServer((request, response) => {
    response.writeHead(200, {'content-type': 'text/event-stream'});
    response.end(
      request.url === hiveRoutes.infer.path
        ? 'data: {"type":"token","text":"bees "}\n\n'
        : 'data: {"id":"c1","object":"text_completion","created":1,"model":"m","choices":[{"index":0,"text":"bees ","finish_reason":null}]}\n\n',
    );
  });
  t.teardown(() => server.close());
  const fixture = new HiveClient({url: server.url});
  const tokens: string[] = [];
  const infer = await t.throwsAsync(
    async () => {
      for await (const event of fixture.inferStream({prompt: 'bees'})) {
        tokens.push(event.type);
      }
    },
    {instanceOf: RbeeError},
  );
  t.deepEqual(tokens, ['token']);
  t.is(infer.code, 'upstream_error');
  t.regex(infer.message, /ended without a final event/);
  const completion = await t.throwsAsync(
    async () => {
      for await (const _chunk of fixture.completionStream({model: 'm', prompt: 'bees'})) {
        // one chunk, then the end of the stream without [DONE]
      }
    },
    {instanceOf: RbeeError},
  );
  t.regex(completion.message, /ended before \[DONE\]/);
});
