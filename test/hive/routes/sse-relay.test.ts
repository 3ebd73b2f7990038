/**
 * The hive's one SSE relay, on a real Fastify server and a real HTTP client, with an upstream
 * stream the test drives: a client that goes away cancels the upstream, an upstream that breaks
 * mid-stream ends the client's stream with the cut-off event, and a client that does not read
 * stops the relay from reading the upstream.
 */
import http from 'node:http';
import type {AddressInfo} from 'node:net';
import {Readable} from 'node:stream';
import type {ReadableStream as NodeReadableStream} from 'node:stream/web';
import test from 'ava';
import Fastify, {type FastifyInstance} from 'fastify';
import type {HttpAnswer} from '../../../src/http/http-request.js';
import {relayStream, type RelayOptions} from '../../../src/hive/routes/sse-relay.js';
import {waitFor} from '../../helpers/process-tree.js';

const encoder = new TextEncoder();

/** An upstream answer the test drives, as the hive's request to a worker gives it. */
function answer(stream: ReadableStream<Uint8Array>): HttpAnswer {
  const body = Readable.fromWeb(stream as NodeReadableStream<Uint8Array>);
  return {
    status: 200,
    ok: true,
    header: name => (name === 'content-type' ? 'text/event-stream' : undefined),
    body,
    text: () => Promise.reject(new Error('a stream is relayed, not read whole')),
    cancel: () => body.destroy(),
  };
}

async function serve(upstream: () => ReadableStream<Uint8Array>, options: Partial<RelayOptions> = {}): Promise<{app: FastifyInstance; url: string}> {
  const app = Fastify();
  app.get('/stream', async (_request, reply) => {
    await relayStream(answer(upstream()), reply, {
      openAi: false,
      cutOff: reason => ({type: 'error', error: {code: 'worker_failed', message: reason}}),
      ...options,
    });
  });
  await app.listen({host: '127.0.0.1', port: 0});
  return {app, url: `http://127.0.0.1:${(app.server.address() as AddressInfo).port}/stream`};
}

function get(url: string): Promise<http.IncomingMessage> {
  return new Promise((resolve, reject) => {
    http.get(url, resolve).on('error', reject);
  });
}

async function readAll(response: http.IncomingMessage): Promise<string> {
  let text = '';
  for await (const chunk of response) {
    text += String(chunk);
  }
  return text;
}

test('a client that goes away mid-stream cancels the upstream', async t => {
  let cancelled: unknown = null;
  let pulls = 0;
  const {app, url} = await serve(
    () =>
      new ReadableStream<Uint8Array>({
        start: controller => controller.enqueue(encoder.encode('data: {"type":"token","text":"a"}\n\n')),
        // The upstream then goes quiet, as a worker between tokens does: the relay waits on a read.
        pull: () => {
          pulls += 1;
          return new Promise(() => undefined);
        },
        cancel: reason => {
          cancelled = reason ?? 'cancelled';
        },
      }),
  );
  t.teardown(() => app.close());
  const response = await get(url);
  const first = await new Promise<string>(resolve => response.once('data', chunk => resolve(String(chunk))));
  t.regex(first, /"token"/);
  await waitFor(() => pulls > 0, 10_000, 'the relay to wait on the upstream');
  response.destroy();
  await waitFor(() => cancelled !== null, 10_000, 'the upstream to be cancelled');
  t.not(cancelled, null);
});

test('an upstream that breaks mid-stream ends the client stream with the cut-off event', async t => {
  let fail: ((error: Error) => void) | undefined;
  const {app, url} = await serve(
    () =>
      new ReadableStream<Uint8Array>({
        start: controller => {
          controller.enqueue(encoder.encode('data: {"type":"token","text":"a"}\n\n'));
          fail = error => controller.error(error);
        },
      }),
  );
  t.teardown(() => app.close());
  const response = await get(url);
  t.is(response.statusCode, 200);
  const text = readAll(response);
  await waitFor(() => fail !== undefined, 10_000, 'the upstream to start');
  fail!(new Error('engine died'));
  // readAll resolves only on a properly ended (complete) response; a torn one rejects.
  const events = (await text).split('\n\n').filter(block => block !== '');
  t.deepEqual(events, ['data: {"type":"token","text":"a"}', 'data: {"type":"error","error":{"code":"worker_failed","message":"engine died"}}']);
  t.true(response.complete);
});

test('a relay that fails on a chunk (its token count throws) ends the client stream with the cut-off event and cancels the upstream', async t => {
  let cancelled = false;
  const {app, url} = await serve(
    () =>
      new ReadableStream<Uint8Array>({
        start: controller => controller.enqueue(encoder.encode('data: {"type":"token","text":"a"}\n\n')),
        pull: () => new Promise(() => undefined),
        cancel: () => {
          cancelled = true;
        },
      }),
    {
      onChunk: () => {
        throw new Error('count failed');
      },
    },
  );
  t.teardown(() => app.close());
  const text = await readAll(await get(url));
  t.deepEqual(
    text.split('\n\n').filter(block => block !== ''),
    ['data: {"type":"error","error":{"code":"worker_failed","message":"the relay failed: count failed"}}'],
  );
  await waitFor(() => cancelled, 10_000, 'the upstream to be cancelled');
  t.true(cancelled);
});

test('a stream that ends without its end marker gets the cut-off event; one with it does not', async t => {
  for (const [body, cut] of [
    ['data: {"type":"token","text":"a"}\n\n', true],
    ['data: {"type":"token","text":"a"}\n\ndata: {"type":"done","text":"a"}\n\n', false],
  ] as const) {
    const {app, url} = await serve(
      () =>
        new ReadableStream<Uint8Array>({
          start: controller => {
            controller.enqueue(encoder.encode(body));
            controller.close();
          },
        }),
      {headers: {'x-rbee-workflow-id': 'wf-1'}},
    );
    const response = await get(url);
    t.is(response.headers['x-rbee-workflow-id'], 'wf-1');
    const text = await readAll(response);
    await app.close();
    t.is(text.includes('"worker_failed"'), cut, text);
    t.true(text.startsWith(body));
  }
});

test('a client that does not read stops the relay from reading the upstream (backpressure)', async t => {
  const chunk = new Uint8Array(64 * 1024).fill(0x61);
  const chunks = 400;
  let pulled = 0;
  let pulledWhileFull = 0;
  let full = false;
  let raw: http.ServerResponse | undefined;
  const app = Fastify();
  app.get('/stream', async (_request, reply) => {
    raw = reply.raw;
    const upstream = new ReadableStream<Uint8Array>(
      {
        pull: controller => {
          if (raw!.writableNeedDrain) {
            pulledWhileFull += 1;
          }
          pulled += 1;
          if (pulled > chunks) {
            controller.enqueue(encoder.encode('\ndata: {"type":"done"}\n\n'));
            controller.close();
          } else {
            controller.enqueue(chunk);
          }
        },
      },
      {highWaterMark: 0},
    );
    await relayStream(answer(upstream), reply, {openAi: false, cutOff: () => ({type: 'error'})});
  });
  await app.listen({host: '127.0.0.1', port: 0});
  t.teardown(() => app.close());
  const response = await get(`http://127.0.0.1:${(app.server.address() as AddressInfo).port}/stream`);
  response.pause();
  await waitFor(
    () => {
      full ||= raw?.writableNeedDrain === true;
      return full;
    },
    20_000,
    "the client's buffers to fill",
  );
  const heldAt = pulled;
  t.true(heldAt < chunks, `the relay read ${heldAt} of ${chunks} chunks from the upstream for a client that read nothing`);
  let received = 0;
  response.on('data', (data: Buffer) => {
    received += data.length;
  });
  response.resume();
  await new Promise(resolve => response.once('end', resolve));
  t.is(received, chunks * chunk.length + '\ndata: {"type":"done"}\n\n'.length);
  t.is(pulledWhileFull, 0, 'the upstream was read while the client had not taken what was written');
});
