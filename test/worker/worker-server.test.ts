/**
 * A worker's HTTP API in process, over real sockets on 127.0.0.1, with third-party adapters from
 * test/fixtures: what a plugin answers is checked, streams open only once there is something to
 * send (so admission and early failures keep their status), prompts longer than the context are
 * refused, OpenAI clients get OpenAI's error shape and the usage chunk they ask for.
 */
import test from 'ava';
import type {RbeeAdapter} from '../../src/adapters/adapter-api.js';
import {OpenAiErrorBodySchema, ErrorBodySchema, ChatCompletionChunkSchema} from '../../src/protocol/wire.js';
import {WorkerRuntime} from '../../src/worker/worker-runtime.js';
import {createWorkerServer} from '../../src/worker/worker-server.js';
import {testAdapterContext} from '../helpers/adapter-context.js';

type Factory = (options?: Record<string, unknown>) => RbeeAdapter;
/** Plugins are plain JS packages, loaded as the worker loads them: by URL, untyped. */
async function plugin(file: string): Promise<Factory> {
  return ((await import(new URL(`../fixtures/${file}`, import.meta.url).href)) as {default: Factory}).default;
}
const badResult = await plugin('bad-adapters/bad-result.js');
const wordsAdapter = await plugin('adapter-words/index.js');

type Served = {url: string; close: () => Promise<void>};

async function serve(adapter: RbeeAdapter, shape: {parallel?: number; maxQueue?: number; contextSize?: number} = {}): Promise<Served> {
  const context = testAdapterContext({contextSize: shape.contextSize ?? 4_096, parallel: shape.parallel ?? 1});
  const runtime = new WorkerRuntime(
    {workerId: 'worker-test', modelName: 'm', device: 'cpu', parallel: shape.parallel ?? 1, maxQueue: shape.maxQueue ?? 8},
    adapter,
    context,
  );
  await adapter.start(context);
  runtime.markReady();
  // No hive, so no worker key (a standalone worker): these tests are about what the API answers, not who may ask.
  const app = createWorkerServer(runtime, {key: null});
  await app.listen({host: '127.0.0.1', port: 0});
  const address = app.server.address();
  const port = typeof address === 'object' && address !== null ? address.port : 0;
  return {url: `http://127.0.0.1:${port}`, close: () => app.close()};
}

async function post(url: string, body: unknown, signal?: AbortSignal) {
  return fetch(url, {method: 'POST', headers: {'content-type': 'application/json'}, body: JSON.stringify(body), signal: signal ?? AbortSignal.timeout(30_000)});
}

function sseData(text: string): string[] {
  return text
    .split('\n')
    .filter(line => line.startsWith('data: '))
    .map(line => line.slice(6));
}

test('a plugin whose infer answers {text: 42} is a 502 naming the plugin, streamed or not', async t => {
  const worker = await serve(badResult());
  t.teardown(worker.close);
  const plain = await post(`${worker.url}/v1/infer`, {prompt: 'hello'});
  t.is(plain.status, 502);
  const body = ErrorBodySchema.parse(await plain.json());
  t.is(body.error.code, 'adapter_error');
  t.regex(body.error.message, /adapter acme:bad-result.*`text`: .*expected string/);

  // Its stream sends a number as text: nothing reached the client yet, so it is still a 502.
  const streamed = await post(`${worker.url}/v1/infer`, {prompt: 'stream-bad', stream: true});
  t.is(streamed.status, 502);
  t.regex(ErrorBodySchema.parse(await streamed.json()).error.message, /adapter acme:bad-result streamed an invalid event/);

  const chat = await post(`${worker.url}/v1/chat/completions`, {model: 'm', messages: [{role: 'user', content: 'hi'}]});
  t.is(chat.status, 502);
  t.like(OpenAiErrorBodySchema.parse(await chat.json()).error, {type: 'server_error', code: 'adapter_error'});
});

test('a streamed request over the queue limit gets 503 + Retry-After before any byte, like a plain one', async t => {
  const worker = await serve(wordsAdapter({tokenMs: 50}), {parallel: 1, maxQueue: 0});
  t.teardown(worker.close);
  const first = new AbortController();
  t.teardown(() => first.abort());
  const running = await post(`${worker.url}/v1/infer`, {prompt: 'bees make honey', max_tokens: 10_000, stream: true}, first.signal);
  t.is(running.status, 200);
  const reader = running.body!.getReader();
  await reader.read(); // its first token: it holds the one slot

  for (const [path, body] of [
    ['/v1/infer', {prompt: 'more please', stream: true}],
    ['/v1/chat/completions', {model: 'm', messages: [{role: 'user', content: 'more'}], stream: true}],
    ['/v1/completions', {model: 'm', prompt: 'more', stream: true}],
  ] as const) {
    const refused = await post(`${worker.url}${path}`, body);
    t.is(refused.status, 503, path);
    t.is(refused.headers.get('retry-after'), '1', path);
    t.regex(refused.headers.get('content-type') ?? '', /application\/json/, path);
    t.regex(JSON.stringify(await refused.json()), /queue is full/, path);
  }
  first.abort();
});

test('a prompt too short to overflow the context is not counted: no engine round trip before its first token', async t => {
  const words = wordsAdapter({tokenMs: 1});
  const counted: number[] = [];
  const countTokens = words.countTokens!.bind(words);
  const adapter: RbeeAdapter = {
    ...words,
    async countTokens(prompt, context) {
      const tokens = await countTokens(prompt, context);
      counted.push(tokens);
      return tokens;
    },
  };
  const worker = await serve(adapter, {contextSize: 256});
  t.teardown(worker.close);
  // 3 words, 15 bytes: fewer tokens than the context however it is tokenized.
  const short = await post(`${worker.url}/v1/infer`, {prompt: 'bees make honey', max_tokens: 2});
  t.is(short.status, 200);
  t.deepEqual(counted, []);
  // 300 bytes in 3 words: it could overflow 256 tokens, so it is counted (3) and served.
  const long = ['a', 'b', 'c'].map(letter => letter.repeat(99)).join(' ');
  const served = await post(`${worker.url}/v1/infer`, {prompt: long, max_tokens: 2});
  t.is(served.status, 200);
  t.deepEqual(counted, [3]);
  const chat = await post(`${worker.url}/v1/chat/completions`, {model: 'm', messages: [{role: 'user', content: long}], max_tokens: 2});
  t.is(chat.status, 200);
  t.deepEqual(counted, [3, 3]);
});

test('a prompt longer than the context is a 400 naming the limit, before it queues', async t => {
  const worker = await serve(wordsAdapter(), {contextSize: 4_096});
  t.teardown(worker.close);
  const prompt = Array.from({length: 12_500}, (_, index) => `w${index}`).join(' ');
  const started = Date.now();
  const refused = await post(`${worker.url}/v1/infer`, {prompt, max_tokens: 4, stream: true});
  t.is(refused.status, 400);
  const body = ErrorBodySchema.parse(await refused.json());
  t.is(body.error.code, 'context_length_exceeded');
  t.regex(body.error.message, /the prompt is 12500 tokens but this worker's context holds 4096/);
  t.true(Date.now() - started < 10_000);

  const chat = await post(`${worker.url}/v1/chat/completions`, {model: 'm', messages: [{role: 'user', content: prompt}]});
  t.is(chat.status, 400);
  t.like(OpenAiErrorBodySchema.parse(await chat.json()).error, {type: 'invalid_request_error', param: 'messages', code: 'context_length_exceeded'});

  const fits = await post(`${worker.url}/v1/infer`, {prompt: 'short prompt', max_tokens: 2});
  t.is(fits.status, 200);
});

test('stream_options.include_usage: a last chunk with no choices and the usage, then [DONE]', async t => {
  const worker = await serve(wordsAdapter({tokenMs: 1}));
  t.teardown(worker.close);
  const chat = await post(`${worker.url}/v1/chat/completions`, {
    model: 'm',
    messages: [{role: 'user', content: 'one two three'}],
    max_tokens: 3,
    stream: true,
    stream_options: {include_usage: true},
  });
  t.is(chat.status, 200);
  const events = sseData(await chat.text());
  t.is(events.at(-1), '[DONE]');
  const chunks = events.slice(0, -1).map(data => ChatCompletionChunkSchema.parse(JSON.parse(data)));
  const last = chunks.at(-1)!;
  t.deepEqual(last.choices, []);
  t.deepEqual(last.usage, {prompt_tokens: 3, completion_tokens: 3, total_tokens: 6});
  t.true(
    chunks.slice(0, -1).every(chunk => chunk.usage === null),
    'usage: null on every other chunk',
  );
  t.is(
    chunks
      .slice(0, -1)
      .map(chunk => chunk.choices[0]?.delta.content ?? '')
      .join(''),
    'one two three ',
  );

  const completion = await post(`${worker.url}/v1/completions`, {
    model: 'm',
    prompt: 'a b',
    max_tokens: 2,
    stream: true,
    stream_options: {include_usage: true},
  });
  const completionEvents = sseData(await completion.text());
  t.like(JSON.parse(completionEvents.at(-2)!), {object: 'text_completion', choices: [], usage: {prompt_tokens: 2, completion_tokens: 2, total_tokens: 4}});

  const without = sseData(
    await (await post(`${worker.url}/v1/chat/completions`, {model: 'm', messages: [{role: 'user', content: 'x'}], max_tokens: 1, stream: true})).text(),
  );
  t.false(
    without.some(data => data.includes('"usage"')),
    'no usage unless asked for',
  );
});

test('unknown fields are a 400 naming them: OpenAI-shaped on the OpenAI routes, rbee-shaped on /v1/infer', async t => {
  const worker = await serve(wordsAdapter({tokenMs: 1}));
  t.teardown(worker.close);
  const chat = await post(`${worker.url}/v1/chat/completions`, {model: 'm', messages: [{role: 'user', content: 'x'}], max_tokens: 1, dry_run: true});
  t.is(chat.status, 400);
  t.like(OpenAiErrorBodySchema.parse(await chat.json()).error, {type: 'invalid_request_error', param: 'dry_run', code: 'invalid_request'});
  const tools = await post(`${worker.url}/v1/chat/completions`, {
    model: 'm',
    messages: [{role: 'user', content: 'x'}],
    tools: [{type: 'function', function: {name: 'f'}}],
  });
  t.is(tools.status, 400);
  t.like(OpenAiErrorBodySchema.parse(await tools.json()).error, {param: 'tools'});
  // Documented fields at their defaults, as SDKs send them, are fine.
  const documented = await post(`${worker.url}/v1/chat/completions`, {
    model: 'm',
    messages: [{role: 'user', content: 'x'}],
    max_tokens: 1,
    user: 'u',
    frequency_penalty: 0,
    presence_penalty: 0,
    logprobs: false,
    n: 1,
    response_format: {type: 'text'},
    tools: [],
    metadata: {run: '1'},
    store: false,
  });
  t.is(documented.status, 200, JSON.stringify(await documented.clone().json()));
  const infer = await post(`${worker.url}/v1/infer`, {prompt: 'x', max_token: 1});
  t.is(infer.status, 400);
  const body = (await infer.json()) as unknown;
  t.deepEqual(Object.keys((body as {error: object}).error).sort(), ['code', 'message']);
  t.regex(ErrorBodySchema.parse(body).error.message, /`max_token`: unknown field/);
});
