/**
 * The candle engine through its typed wrapper (src/native): load, streamed generation,
 * cancellation, seeded sampling, and the expected failures as NativeEngineErrors with a code.
 */
import test from 'ava';
import {execa} from 'execa';
import {loadNativeModel, NativeEngineError, type NativeForwardPath, type NativeModel} from '../../src/native/index.js';
import {defaultModelPath} from '../helpers/test-model.js';
import {ggufWithMetadata, nativeTest, tempFile, truncatedCopy} from './native-helpers.js';

const {serial} = await nativeTest();
let model: NativeModel | undefined;

test.before(async () => {
  if (serial !== test.serial.skip) {
    model = await loadNativeModel({path: await defaultModelPath(), contextSize: 512, threads: 2});
  }
});

test.after.always(() => {
  model?.close();
});

serial('load: the default model is Gemma 3 with its vocabulary, chat template and memory figures', t => {
  const {info} = model!;
  t.is(info.architecture, 'gemma3');
  t.is(info.tokenizer, 'llama');
  t.is(info.vocabSize, 262_144);
  t.is(info.contextSize, 512);
  t.is(info.layers, 18);
  t.is(info.bosToken, 2);
  t.true(info.eogTokens.includes(1) && info.eogTokens.includes(106), 'EOS and <end_of_turn> end a generation');
  t.true(info.hasChatTemplate);
  const memory = model!.memory();
  t.true(memory.rss > info.weightBytes, `rss ${memory.rss} holds the weights (${info.weightBytes})`);
  t.is(memory.vramUsed, undefined);
  t.deepEqual(model!.tokenize('Hello, world!'), [2, 9259, 236764, 1902, 236888]);
  t.is(model!.detokenize([9259, 236764, 1902, 236888]), 'Hello, world!');
  t.is(model!.applyChatTemplate([{role: 'user', content: 'Hi'}]), '<bos><start_of_turn>user\nHi<end_of_turn>\n<start_of_turn>model\n');
});

serial('stream: text pieces arrive before the generation ends and add up to its text', async t => {
  const arrivals: number[] = [];
  const pieces: string[] = [];
  let ended = false;
  const result = await model!.generate({
    prompt: 'The capital of France is',
    maxTokens: 24,
    onText: text => {
      pieces.push(text);
      arrivals.push(ended ? 1 : 0);
    },
  }).finally(() => {
    ended = true;
  });
  t.is(result.finishReason, 'length');
  t.is(result.tokensGenerated, 24);
  t.is(result.tokens.length, 24);
  t.is(result.promptTokens, 6);
  t.true(pieces.length >= 10, `${pieces.length} pieces`);
  t.false(arrivals.includes(1), 'every piece arrived before the promise settled');
  t.is(pieces.join(''), result.text);
  t.true(result.text.startsWith(' the capital of'), result.text);
});

serial('cancel: aborting mid-generation ends it as cancelled within a token', async t => {
  const controller = new AbortController();
  let abortedAt = 0;
  let pieces = 0;
  const result = await model!.generate({
    prompt: 'Once upon a time',
    maxTokens: 400,
    signal: controller.signal,
    onText: () => {
      pieces++;
      if (pieces === 3) {
        abortedAt = performance.now();
        controller.abort();
      }
    },
  });
  const latency = performance.now() - abortedAt;
  t.is(result.finishReason, 'cancelled');
  t.true(result.tokensGenerated < 400 && result.tokensGenerated >= 3, `${result.tokensGenerated} tokens`);
  t.true(latency < 1_000, `cancelled ${Math.round(latency)} ms after the abort`);
  // An already-aborted signal never starts.
  const early = await model!.generate({prompt: 'x', maxTokens: 5, signal: AbortSignal.abort()});
  t.is(early.finishReason, 'cancelled');
  t.is(early.tokensGenerated, 0);
});

serial('sampling: the same seed gives the same text, stop strings cut, EOS stops a chat turn', async t => {
  const request = {prompt: 'My favourite animal is', maxTokens: 20, temperature: 0.9, topK: 40, topP: 0.95};
  const a = await model!.generate({...request, seed: 42});
  const b = await model!.generate({...request, seed: 42});
  t.deepEqual(a.tokens, b.tokens);
  const runs = await Promise.all([1, 2, 3].map(async seed => (await model!.generate({...request, seed})).text));
  t.true(new Set(runs).size > 1, 'different seeds sample differently');

  const stopped = await model!.generate({prompt: 'The capital of France is', maxTokens: 30, stop: [' France.']});
  t.is(stopped.finishReason, 'stop');
  t.is(stopped.text, ' the capital of the country of');

  const chat = await model!.generate({messages: [{role: 'user', content: 'Say hello.'}], maxTokens: 40});
  t.true(['stop', 'length'].includes(chat.finishReason));
});

serial('errors: prompt_too_long and invalid_request come back as NativeEngineErrors with a code', async t => {
  const long = 'word '.repeat(600);
  const error = await t.throwsAsync(model!.generate({prompt: long, maxTokens: 4}), {instanceOf: NativeEngineError});
  t.is(error.nativeCode, 'prompt_too_long');
  t.is(error.code, 'invalid_request');
  t.regex(error.message, /context holds 512/);

  const bad = await t.throwsAsync(model!.generate({prompt: 'x', maxTokens: 4, topP: 2}), {instanceOf: NativeEngineError});
  t.is(bad.nativeCode, 'invalid_request');
  const both = await t.throwsAsync(model!.generate({prompt: 'x', messages: [], maxTokens: 4}), {instanceOf: NativeEngineError});
  t.is(both.nativeCode, 'invalid_request');
});

serial('errors: a truncated GGUF is invalid_gguf', async t => {
  const truncated = truncatedCopy(await defaultModelPath(), 50_000_000);
  const error = await t.throwsAsync(loadNativeModel({path: truncated}), {instanceOf: NativeEngineError});
  t.is(error.nativeCode, 'invalid_gguf');
  t.regex(error.message, /truncated/);

  const garbage = await t.throwsAsync(loadNativeModel({path: tempFile('garbage.gguf', Buffer.from('not a gguf at all'))}), {instanceOf: NativeEngineError});
  t.is(garbage.nativeCode, 'invalid_gguf');

  const missing = await t.throwsAsync(loadNativeModel({path: '/nonexistent/model.gguf'}), {instanceOf: NativeEngineError});
  t.is(missing.nativeCode, 'file_not_found');
});

serial('errors: an unknown architecture is unsupported_architecture, naming it', async t => {
  const file = tempFile('mamba.gguf', ggufWithMetadata({'general.architecture': 'mamba9'}));
  const error = await t.throwsAsync(loadNativeModel({path: file}), {instanceOf: NativeEngineError});
  t.is(error.nativeCode, 'unsupported_architecture');
  t.regex(error.message, /"mamba9"/);
  t.regex(error.message, /gemma3, llama, qwen2, qwen3/);
});

serial('errors: a device this machine lacks is device_unavailable, a malformed one device_unknown', async t => {
  const path = await defaultModelPath();
  const cuda = await t.throwsAsync(loadNativeModel({path, device: 'cuda:7'}), {instanceOf: NativeEngineError});
  t.is(cuda.nativeCode, 'device_unavailable');
  t.is(cuda.code, 'device_unknown');
  const bogus = await t.throwsAsync(loadNativeModel({path, device: 'tpu'}), {instanceOf: NativeEngineError});
  t.is(bogus.nativeCode, 'device_unknown');
});

serial('forward: an unknown path is invalid_request before the binding loads; the graph path off CUDA is device_unavailable', async t => {
  const path = await defaultModelPath();
  const unknown = await t.throwsAsync(loadNativeModel({path, forward: 'cuda-graph' as NativeForwardPath}), {instanceOf: NativeEngineError});
  t.is(unknown.nativeCode, 'invalid_request');
  t.regex(unknown.message, /forward: expected one of ggml, tensor, graph/);
  const graph = await t.throwsAsync(loadNativeModel({path, forward: 'graph'}), {instanceOf: NativeEngineError});
  t.is(graph.nativeCode, 'device_unavailable');
  t.regex(graph.message, /graph forward path runs on a CUDA device/);
  const tensor = await loadNativeModel({path, contextSize: 64, forward: 'tensor'});
  t.is(tensor.info.forward, 'tensor');
  tensor.close();
});

serial('close: a closed model answers model_closed', async t => {
  const second = await loadNativeModel({path: await defaultModelPath(), contextSize: 64});
  second.close();
  const error = await t.throwsAsync(second.generate({prompt: 'x', maxTokens: 1}), {instanceOf: NativeEngineError});
  t.is(error.nativeCode, 'model_closed');
  t.throws(() => second.tokenize('x'), {instanceOf: NativeEngineError});
});

test('without the built binding, loading fails with an error that names npm run build:native', async t => {
  // NAPI_RS_NATIVE_LIBRARY_PATH points napi-rs's loader at a .node that is not there: the same
  // failure as a checkout where `npm run build:native` never ran.
  const wrapper = new URL('../../src/native/index.ts', import.meta.url).href;
  const script = `import(${JSON.stringify(wrapper)}).then(m => m.loadNativeModel({path: 'x.gguf'})).then(() => console.log('{}'), e => console.log(JSON.stringify({name: e.constructor.name, code: e.code, nativeCode: e.nativeCode, message: e.message})))`;
  const child = await execa(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], {
    env: {...process.env, NAPI_RS_NATIVE_LIBRARY_PATH: '/nonexistent/rbee-native.node'},
    reject: false,
  });
  const error = JSON.parse(String(child.stdout).trim().split('\n').at(-1) ?? '{}') as {name?: string; code?: string; nativeCode?: string; message?: string};
  t.is(error.name, 'NativeEngineError', String(child.stderr));
  t.is(error.nativeCode, 'binding_missing');
  t.is(error.code, 'engine_error');
  t.regex(error.message ?? '', /npm run build:native/);
});
