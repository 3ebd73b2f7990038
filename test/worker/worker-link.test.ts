/**
 * The hive's link to a worker, both ends (src/worker/worker-link.ts serving, src/hive/worker-links.ts
 * asking) over a real Unix socket: answers arrive as an HTTP answer would (status, headers, a body
 * stream), errors keep their status and shape, the key is required, connections are kept, a cancel
 * reaches the generation, and a worker without a link is reported so that HTTP is used instead.
 */
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import test, {type ExecutionContext} from 'ava';
import {RbeeError} from '../../src/errors.js';
import {WorkerLinks, workerLinkPath} from '../../src/hive/worker-links.js';
import {decodeHead, encodeFrame, encodeRequest, FrameReader, FrameType} from '../../src/http/link-frames.js';
import type {Answer, InferencePath} from '../../src/worker/inference-handlers.js';
import {serveWorkerLink} from '../../src/worker/worker-link.js';
import {waitFor} from '../helpers/process-tree.js';

const key = 'k'.repeat(64);
const workerId = 'worker-link1';

type Handle = (path: InferencePath, body: unknown, answer: Answer) => Promise<void>;

async function setup(t: ExecutionContext, handle: Handle) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'rbee-link-'));
  fs.chmodSync(dir, 0o700);
  const socketPath = workerLinkPath(dir, workerId)!;
  const logged: string[] = [];
  const link = await serveWorkerLink(socketPath, key, handle, message => logged.push(message));
  const links = new WorkerLinks(dir);
  t.teardown(async () => {
    links.close();
    await link.close();
    fs.rmSync(dir, {recursive: true, force: true});
  });
  return {dir, socketPath, link, links, logged};
}

const body = (value: unknown) => Buffer.from(JSON.stringify(value));
const ask = (links: WorkerLinks, route: string, value: unknown, signal = new AbortController().signal, workerKey: string | null = key) =>
  links.request({id: workerId, key: workerKey}, route, body(value), signal);

test('a streamed answer comes back as events, with the status and headers of the same answer over HTTP; the socket is 0600', async t => {
  const {links, socketPath} = await setup(t, async (route, request, answer) => {
    t.is(route, '/v1/infer');
    t.deepEqual(request, {prompt: 'hi'});
    answer.event({type: 'token', text: 'a'});
    answer.event({type: 'token', text: 'b'});
    answer.event('[DONE]');
    answer.end();
  });
  t.is(fs.statSync(socketPath).mode & 0o777, 0o600);
  const answer = await ask(links, '/v1/infer', {prompt: 'hi'});
  t.truthy(answer);
  t.is(answer!.status, 200);
  t.true(answer!.ok);
  t.is(answer!.header('Content-Type'), 'text/event-stream; charset=utf-8');
  t.is(await answer!.text(), 'data: {"type":"token","text":"a"}\n\ndata: {"type":"token","text":"b"}\n\ndata: [DONE]\n\n');
});

test.serial('a whole answer, and errors with their status, shape and Retry-After; one kept connection serves them all', async t => {
  // Serial (ava runs these before the others): the connections counted are this test's alone.
  const connections: net.Socket[] = [];
  const {links, socketPath} = await setup(t, async (route, request, answer) => {
    const {fail} = request as {fail?: string};
    if (fail === 'busy') {
      throw new RbeeError('worker_not_ready', 'queue full');
    }
    if (fail === 'bad') {
      throw new RbeeError('invalid_request', 'max_tokens: too large', {field: 'max_tokens'});
    }
    answer.json({route});
  });
  const connect = net.createConnection;
  t.teardown(() => {
    (net as {createConnection: typeof net.createConnection}).createConnection = connect;
  });
  (net as {createConnection: typeof net.createConnection}).createConnection = ((...args: Parameters<typeof net.createConnection>) => {
    const socket = connect(...args);
    connections.push(socket);
    return socket;
  }) as typeof net.createConnection;

  const whole = await ask(links, '/v1/completions', {});
  t.is(whole!.status, 200);
  t.is(whole!.header('content-type'), 'application/json; charset=utf-8');
  t.deepEqual(JSON.parse(await whole!.text()), {route: '/v1/completions'});

  const busy = await ask(links, '/v1/infer', {fail: 'busy'});
  t.is(busy!.status, 503);
  t.is(busy!.header('retry-after'), '1');
  t.deepEqual(JSON.parse(await busy!.text()), {error: {code: 'worker_not_ready', message: 'queue full'}});

  // The OpenAI routes' errors take OpenAI's shape, as over HTTP.
  const bad = await ask(links, '/v1/chat/completions', {fail: 'bad'});
  t.is(bad!.status, 400);
  t.like(JSON.parse(await bad!.text()), {error: {code: 'invalid_request', param: 'max_tokens', type: 'invalid_request_error'}});

  const unknown = await ask(links, '/v1/workflows', {});
  t.is(unknown!.status, 404);
  await unknown!.text();
  t.is(connections.length, 1, `one connection for four requests in turn (${socketPath})`);
});

test('a request body that is not JSON is a 400 invalid_json, as over HTTP', async t => {
  const {socketPath} = await setup(t, async () => t.fail('not handled'));
  const socket = net.createConnection(socketPath);
  t.teardown(() => socket.destroy());
  socket.write(Buffer.concat([encodeFrame(FrameType.hello, key), encodeRequest('/v1/infer', Buffer.from('{nope'))]));
  const received: Buffer[] = [];
  socket.on('data', chunk => received.push(chunk));
  await waitFor(() => Buffer.concat(received).includes('invalid_json'), 5_000, 'the error answer');
  t.is(decodeHead(new FrameReader().push(Buffer.concat(received))[0]!.payload).status, 400);
});

test('a connection without the worker key is answered 401 and closed; nothing is generated', async t => {
  let handled = 0;
  const {links} = await setup(t, async (_route, _request, answer) => {
    handled++;
    answer.json({});
  });
  const answer = await ask(links, '/v1/infer', {}, new AbortController().signal, 'wrong');
  t.is(answer!.status, 401);
  t.like(JSON.parse(await answer!.text()), {error: {code: 'unauthorized'}});
  t.is(handled, 0);
  // A wrong key alone is enough to be answered and closed: such a connection is not left open.
  const {socketPath} = await setup(t, async () => t.fail('not handled'));
  const socket = net.createConnection(socketPath);
  t.teardown(() => socket.destroy());
  const received: Buffer[] = [];
  socket.on('data', chunk => received.push(chunk));
  socket.write(encodeFrame(FrameType.hello, 'wrong'));
  await new Promise(resolve => socket.once('close', resolve));
  t.is(decodeHead(new FrameReader().push(Buffer.concat(received))[0]!.payload).status, 401);
});

test('cancelling an answer mid-stream aborts the generation on the worker', async t => {
  let generation: AbortSignal | undefined;
  const {links} = await setup(t, async (_route, _request, answer) => {
    generation = answer.signal;
    answer.event({type: 'token', text: 'a'});
    await new Promise(resolve => answer.signal.addEventListener('abort', resolve, {once: true}));
  });
  const answer = await ask(links, '/v1/infer', {});
  await new Promise(resolve => answer!.body.once('readable', resolve));
  answer!.cancel();
  await waitFor(() => generation?.aborted === true, 5_000, "the worker's abort signal");
  t.true(generation!.aborted);
});

test('aborting before the answer begins rejects the request and aborts the generation', async t => {
  let generation: AbortSignal | undefined;
  const {links} = await setup(t, async (_route, _request, answer) => {
    generation = answer.signal;
    await new Promise(resolve => answer.signal.addEventListener('abort', resolve, {once: true}));
  });
  const controller = new AbortController();
  const pending = ask(links, '/v1/infer', {}, controller.signal);
  await waitFor(() => generation !== undefined, 5_000, 'the request at the worker');
  controller.abort(new Error('client went away'));
  await t.throwsAsync(pending, {message: 'client went away'});
  await waitFor(() => generation!.aborted, 5_000, "the worker's abort signal");
  t.pass();
});

test('a worker that dies mid-answer cuts the body off with an error (the relay reports a cut-off stream)', async t => {
  const {links, link} = await setup(t, async (_route, _request, answer) => {
    answer.event({type: 'token', text: 'a'});
    await link.close(); // the worker's end goes, as when its process is killed
  });
  const answer = await ask(links, '/v1/infer', {});
  await t.throwsAsync(answer!.text(), {message: /the connection closed/});
});

test('a worker with no link (none served, or a path too long for a socket) is reported as null: HTTP takes the request', async t => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'rbee-link-'));
  t.teardown(() => fs.rmSync(dir, {recursive: true, force: true}));
  const links = new WorkerLinks(dir);
  t.is(await ask(links, '/v1/infer', {}), null, 'no socket there');
  t.is(await new WorkerLinks(path.join(dir, 'x'.repeat(120))).request({id: workerId, key}, '/v1/infer', body({}), new AbortController().signal), null);
  t.is(await ask(links, '/v1/infer', {}, new AbortController().signal, null), null, 'no key known yet');
  t.is(workerLinkPath(path.join(dir, 'x'.repeat(120)), workerId), null);
});

test('garbage on the link drops that connection only; the link goes on serving', async t => {
  const {links, socketPath, logged} = await setup(t, async (_route, _request, answer) => answer.json({ok: true}));
  const socket = net.createConnection(socketPath);
  socket.on('error', () => undefined);
  socket.write(Buffer.from('GET / HTTP/1.1\r\nHost: x\r\n\r\n'));
  await new Promise(resolve => socket.once('close', resolve));
  t.regex(logged.join('\n'), /dropped a connection: worker link: (unknown frame type|a frame of)/);
  const answer = await ask(links, '/v1/infer', {});
  t.deepEqual(JSON.parse(await answer!.text()), {ok: true});
});
