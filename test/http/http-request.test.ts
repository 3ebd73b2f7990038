/**
 * The relay's HTTP client (src/http/http-request.ts) against a real loopback server: answers and
 * headers, kept-alive connections, and every way a request ends early (aborted before or during
 * its answer, cancelled by the reader, a server that drops the connection mid-body).
 */
import http from 'node:http';
import type {AddressInfo} from 'node:net';
import test from 'ava';
import {httpRequest} from '../../src/http/http-request.js';
import {waitFor} from '../helpers/process-tree.js';

type Handler = (request: http.IncomingMessage, response: http.ServerResponse) => void;

async function serve(t: {teardown: (f: () => Promise<void>) => void}, handler: Handler): Promise<string> {
  const server = http.createServer(handler);
  await new Promise<void>(resolve => server.listen(0, '127.0.0.1', resolve));
  t.teardown(
    () =>
      new Promise<void>(resolve => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  );
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
}

test('a POST is answered with its status, headers and body; the next request reuses the connection', async t => {
  const ports: number[] = [];
  const url = await serve(t, (request, response) => {
    ports.push(request.socket.remotePort!);
    let body = '';
    request.on('data', chunk => (body += String(chunk)));
    request.on('end', () => {
      response.writeHead(201, {'content-type': 'application/json', 'retry-after': '3'});
      response.end(JSON.stringify({echo: body, auth: request.headers.authorization}));
    });
  });
  for (let i = 0; i < 2; i++) {
    const answer = await httpRequest(`${url}/x`, {method: 'POST', headers: {authorization: 'Bearer k'}, body: '{"a":1}'});
    t.is(answer.status, 201);
    t.true(answer.ok);
    t.is(answer.header('Retry-After'), '3');
    t.deepEqual(JSON.parse(await answer.text()), {echo: '{"a":1}', auth: 'Bearer k'});
  }
  t.is(ports.length, 2);
  t.is(ports[0], ports[1], 'one kept-alive connection for both requests');
});

test('a kept-alive connection its server dropped as the next request went out: that request goes again on a new connection', async t => {
  // Like llama-server, which closes its connection after every streamed answer: a request sent on the
  // connection before its close is seen gets a reset, and the server never read it.
  const seen: Array<{port: number; nth: number}> = [];
  const counts = new WeakMap<object, number>();
  const url = await serve(t, (request, response) => {
    const nth = (counts.get(request.socket) ?? 0) + 1;
    counts.set(request.socket, nth);
    seen.push({port: request.socket.remotePort!, nth});
    if (nth > 1) {
      request.socket.destroy();
      return;
    }
    request.resume();
    request.on('end', () => response.end('fine'));
  });
  t.is(await (await httpRequest(url, {method: 'POST', body: 'one'})).text(), 'fine');
  t.is(await (await httpRequest(url, {method: 'POST', body: 'two'})).text(), 'fine');
  t.is(seen.length, 3);
  t.is(seen[1]!.port, seen[0]!.port, 'the second request went out on the kept-alive connection');
  t.not(seen[2]!.port, seen[0]!.port, 'and again on a new one');
});

test('a connection reset on a new connection is not retried: the server may have read the request', async t => {
  let requests = 0;
  const url = await serve(t, request => {
    requests++;
    request.socket.destroy();
  });
  const error = await t.throwsAsync(httpRequest(url, {method: 'POST', body: 'x'}));
  t.is((error as NodeJS.ErrnoException).code, 'ECONNRESET');
  t.is(requests, 1);
});

test('a 4xx/5xx is an answer, not an error: ok is false and the body is readable', async t => {
  const url = await serve(t, (_request, response) => {
    response.writeHead(503, {'content-type': 'application/json'});
    response.end('{"error":"busy"}');
  });
  const answer = await httpRequest(url, {method: 'GET'});
  t.is(answer.status, 503);
  t.false(answer.ok);
  t.is(await answer.text(), '{"error":"busy"}');
});

test('an abort before the answer rejects with the reason; a refused connection rejects', async t => {
  const url = await serve(t, () => undefined); // never answers
  const controller = new AbortController();
  const pending = httpRequest(url, {method: 'GET', signal: controller.signal});
  controller.abort(new Error('client gone'));
  await t.throwsAsync(pending, {message: 'client gone'});
  await t.throwsAsync(httpRequest(url, {method: 'GET', signal: AbortSignal.abort(new Error('already'))}), {message: 'already'});
  await t.throwsAsync(httpRequest('http://127.0.0.1:1/', {method: 'GET'}), {message: /ECONNREFUSED/});
  await t.throwsAsync(httpRequest('file:///etc/passwd', {method: 'GET'}), {message: /only http: and https:/});
});

test('an abort or a cancel during the body ends the reading, and the server sees its client go', async t => {
  let serverSawClose = 0;
  const url = await serve(t, (_request, response) => {
    response.writeHead(200, {'content-type': 'text/event-stream'});
    response.write('data: first\n\n');
    response.on('close', () => (serverSawClose += 1));
  });
  const controller = new AbortController();
  const aborted = await httpRequest(url, {method: 'GET', signal: controller.signal});
  const chunks = aborted.body[Symbol.asyncIterator]();
  t.regex(String((await chunks.next()).value), /first/);
  const next = chunks.next();
  controller.abort(new Error('stop'));
  await t.throwsAsync(next);
  await waitFor(() => serverSawClose === 1, 10_000, 'the server to see the aborted client go');

  const cancelled = await httpRequest(url, {method: 'GET'});
  const reading = cancelled.text();
  cancelled.cancel();
  await t.throwsAsync(reading);
  await waitFor(() => serverSawClose === 2, 10_000, 'the server to see the cancelled client go');
});

test('a server that drops the connection mid-body fails the reader (a cut-off body never reads as whole)', async t => {
  const url = await serve(t, (_request, response) => {
    response.writeHead(200, {'content-type': 'text/plain', 'content-length': '100'});
    response.write('only part of it');
    setImmediate(() => response.socket?.destroy());
  });
  const answer = await httpRequest(url, {method: 'GET'});
  await t.throwsAsync(answer.text());
});
