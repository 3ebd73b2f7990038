/**
 * The adapter toolkit's stream readers against a real HTTP peer on 127.0.0.1 that behaves like an
 * engine which dies mid-answer: a stream closed before its end marker is an engine failure, not a
 * finished answer with finish_reason "stop".
 */
import test from 'ava';
import type {AdapterInferRequest} from '../../src/adapters/adapter-api.js';
import {engineSse, openAiStream} from '../../src/adapters/engine-http.js';
import {isRbeeError} from '../../src/errors.js';
import {startFixtureServer} from '../helpers/http-fixture-server.js';

const chunk = (content: string, finish: string | null = null) => `data: ${JSON.stringify({choices: [{delta: {content}, finish_reason: finish}]})}\n\n`;

/** An OpenAI-compatible engine that streams two tokens, then ends as `ending` says. */
async function engine(ending: 'done' | 'close' | 'reset') {
  return startFixtureServer((_request, response) => {
    response.writeHead(200, {'content-type': 'text/event-stream'});
    response.write(chunk('bees '));
    response.write(chunk('make '), () => {
      if (ending === 'done') {
        response.write(chunk('', 'length'));
        response.end('data: [DONE]\n\n');
      } else if (ending === 'close') {
        response.end(); // a clean close, as when the engine's process exits between chunks
      } else {
        response.socket?.destroy();
      }
    });
  });
}

function request(pieces: string[]): AdapterInferRequest {
  return {
    kind: 'chat',
    prompt: '',
    messages: [{role: 'user', content: 'hi'}],
    maxTokens: 8,
    temperature: 0,
    stop: [],
    signal: AbortSignal.timeout(10_000),
    onText: text => pieces.push(text),
  };
}

test('an OpenAI stream that ends with [DONE] is a finished answer', async t => {
  const server = await engine('done');
  t.teardown(server.close);
  const pieces: string[] = [];
  const result = await openAiStream(server.url, request(pieces), {model: 'm'});
  t.like(result, {text: 'bees make ', finishReason: 'length'});
});

for (const ending of ['close', 'reset'] as const) {
  test(`an OpenAI stream the engine cuts off (${ending}) is an engine_error, never finish_reason "stop"`, async t => {
    const server = await engine(ending);
    t.teardown(server.close);
    const pieces: string[] = [];
    const error = await t.throwsAsync(openAiStream(server.url, request(pieces), {model: 'm'}));
    t.true(isRbeeError(error) && error.code === 'engine_error', String(error));
    t.regex(error!.message, ending === 'close' ? /closed its stream before the end marker/ : /stream broke off/);
    t.deepEqual(pieces, ['bees ', 'make '], 'what came before the cut was still streamed');
  });
}

test('engineSse with an end marker: a native stream (llama-server /completion) ending without `stop: true` fails', async t => {
  const server = await startFixtureServer((_request, response) => {
    response.writeHead(200, {'content-type': 'text/event-stream'});
    response.end(`data: ${JSON.stringify({content: 'bees', stop: false})}\n\n`);
  });
  t.teardown(server.close);
  const isEnd = (data: string) => /"stop"\s*:\s*true/.test(data);
  await t.throwsAsync(engineSse(server.url, {}, {signal: AbortSignal.timeout(10_000), onData: () => undefined, isEnd}), {message: /before the end marker/});
  // Without an end marker to check, a plugin's reader keeps its old meaning.
  await t.notThrowsAsync(engineSse(server.url, {}, {signal: AbortSignal.timeout(10_000), onData: () => undefined}));
});

test('engineSse: a reader that fails on an event stops the stream there, and the engine sees its client go', async t => {
  let closedBeforeEnd: (() => void) | undefined;
  const gone = new Promise<void>(resolve => {
    closedBeforeEnd = resolve;
  });
  const server = await startFixtureServer((_request, response) => {
    response.writeHead(200, {'content-type': 'text/event-stream'});
    response.write('data: one\n\ndata: two\n\n');
    // Never ends by itself: only the client's going stops it.
    const timer = setInterval(() => response.write('data: more\n\n'), 20);
    response.on('close', () => {
      clearInterval(timer);
      closedBeforeEnd!();
    });
  });
  t.teardown(server.close);
  const seen: string[] = [];
  const error = await t.throwsAsync(
    engineSse(
      server.url,
      {},
      {
        signal: AbortSignal.timeout(10_000),
        onData: data => {
          seen.push(data);
          if (data === 'two') {
            throw new Error('the reader refused "two"');
          }
        },
      },
    ),
  );
  t.true(isRbeeError(error) && error.code === 'engine_error', String(error));
  t.regex(error!.message, /refused "two"/);
  t.deepEqual(seen, ['one', 'two'], 'nothing after the failing event reached the reader');
  await gone;
});
