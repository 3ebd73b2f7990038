/**
 * The Ollama adapter's pure parts: rbee's generations translated to Ollama's /api/generate and
 * /api/chat bodies, its NDJSON stream lines checked, /api/ps + /api/tags turned into heartbeat
 * fields, the adapter's options validated, and the program chosen (option, RBEE_OLLAMA, cached
 * build, PATH) with a one-line install hint when there is none. The real engine: ollama.test.ts.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import test from 'ava';
import type {AdapterInferRequest} from '../../src/adapters/adapter-api.js';
import {HeartbeatSchema} from '../../src/protocol/wire.js';
import ollama, {missingOllama, ollamaProgram} from '../../adapters/ollama/src/index.js';
import {workerStore} from '../../adapters/ollama/src/ollama-engine.js';
import {
  finishReason,
  modelHeartbeat,
  modelfile,
  ollamaModelName,
  ollamaRequest,
  parsePs,
  parseStreamLine,
  parseTags,
  streamText,
  withoutLatestTag,
} from '../../adapters/ollama/src/ollama-requests.js';

function request(overrides: Partial<AdapterInferRequest> = {}): AdapterInferRequest {
  return {
    kind: 'complete',
    prompt: 'Once upon a time',
    messages: [],
    maxTokens: 16,
    temperature: 0,
    stop: [],
    signal: new AbortController().signal,
    onText: () => undefined,
    ...overrides,
  };
}

test('a completion is a raw /api/generate with the sampling in Ollama names; the CPU worker keeps layers off GPUs', t => {
  const {path: route, body} = ollamaRequest(request({seed: 7, stop: ['\n\n'], topK: 40, topP: 0.9}), 'gemma', 2048, {threads: 2, cpuOnly: true});
  t.is(route, '/api/generate');
  t.deepEqual(body, {
    model: 'gemma',
    prompt: 'Once upon a time',
    raw: true,
    stream: true,
    options: {temperature: 0, num_predict: 16, num_ctx: 2048, num_thread: 2, num_gpu: 0, top_k: 40, top_p: 0.9, seed: 7, stop: ['\n\n']},
  });
});

test('a chat goes to /api/chat with the messages through the template (no raw), and no stop/seed when none was asked', t => {
  const messages = [
    {role: 'system' as const, content: 'be brief'},
    {role: 'user' as const, content: 'hi'},
  ];
  const {path: route, body} = ollamaRequest(request({kind: 'chat', prompt: '', messages, temperature: 0.5}), 'm', 4096, {threads: undefined, cpuOnly: false});
  t.is(route, '/api/chat');
  t.deepEqual(body, {model: 'm', messages, stream: true, options: {temperature: 0.5, num_predict: 16, num_ctx: 4096}});
});

test('stream lines: text from generate and chat lines, the final counts, an error line or junk fails the generation', t => {
  t.is(streamText(parseStreamLine('{"model":"m","response":"Hello","done":false}')), 'Hello');
  t.is(streamText(parseStreamLine('{"model":"m","message":{"role":"assistant","content":" there"},"done":false}')), ' there');
  const last = parseStreamLine('{"model":"m","response":"","done":true,"done_reason":"length","prompt_eval_count":5,"eval_count":16}');
  t.like(last, {done: true, done_reason: 'length', prompt_eval_count: 5, eval_count: 16});
  t.is(finishReason(last.done_reason, false), 'length');
  t.is(finishReason('stop', false), 'stop');
  t.is(finishReason('length', true), 'cancelled');
  t.throws(() => parseStreamLine('{"error":"model \\"x\\" not found"}'), {message: /ollama failed the generation: model "x" not found/});
  t.throws(() => parseStreamLine('not json'), {message: /not JSON/});
  t.throws(() => parseStreamLine('{"response":5}'), {message: /unexpected line \(response\)/});
});

test('model names: Ollama-safe, :latest dropped for rbee, and a Modelfile that cannot be split by a line break', t => {
  t.is(ollamaModelName('gemma-3-270m-Q4_K_M'), 'gemma-3-270m-q4_k_m');
  t.is(ollamaModelName('My Model (v2)'), 'my-model-v2-');
  t.is(ollamaModelName('...'), 'model');
  t.is(withoutLatestTag('gemma:latest'), 'gemma');
  t.is(withoutLatestTag('gemma:2b'), 'gemma:2b');
  t.is(modelfile('/m/a.gguf', 2048), 'FROM /m/a.gguf\nPARAMETER num_ctx 2048\n');
  t.throws(() => modelfile('/m/a.gguf\nADAPTER /etc/passwd', 2048), {message: /line break/});
});

test('/api/ps and /api/tags become loaded_models, vram_allocations, expiry and available_models, valid on the wire', t => {
  const ps = parsePs({
    models: [{name: 'gemma:latest', model: 'gemma:latest', size: 500_000_000, size_vram: 300_000_000, expires_at: '2026-12-05T23:00:00.123456789Z'}],
  });
  const tags = parseTags({models: [{name: 'gemma:latest'}, {name: 'second:latest'}, {name: 'theirs:7b'}]});
  const rbeeName = (name: string) => (name === 'gemma:latest' ? 'gemma-3-270m' : withoutLatestTag(name));
  const fields = modelHeartbeat(ps, tags, rbeeName, ['gemma-3-270m', 'second']);
  t.deepEqual(fields, {
    loaded_models: ['gemma-3-270m'],
    vram_allocations: {'gemma-3-270m': 300_000_000},
    vram_used: 300_000_000,
    model_expires_at: {'gemma-3-270m': '2026-12-05T23:00:00.123Z'},
    available_models: ['gemma-3-270m', 'second', 'theirs:7b'],
  });
  t.notThrows(() => HeartbeatSchema.parse({worker_id: 'w-1', status: 'ready', ...fields}));
  t.deepEqual(modelHeartbeat(parsePs({models: null}), parseTags({models: []}), rbeeName, ['a']), {
    loaded_models: [],
    vram_allocations: {},
    vram_used: 0,
    model_expires_at: {},
    available_models: ['a'],
  });
  t.throws(() => parsePs({models: [{size_vram: 1}]}), {message: /\/api\/ps answered an unexpected shape/});
});

test('adapter options are checked, naming the option; good ones pass with their defaults', t => {
  t.throws(() => ollama({keepAlive: 'forever'} as never), {message: /options of adapter rbee:ollama.*keepAlive/s});
  t.throws(() => ollama({models: {'bad name!': '/m.gguf'}}), {message: /models/});
  t.throws(() => ollama({cmd: 'x'} as never), {message: /cmd/});
  const adapter = ollama({keepAlive: '30m', models: {second: '/m.gguf'}, preload: false});
  t.is(adapter.type, 'ollama');
  t.is(typeof adapter.unloadModel, 'function');
});

test('the program: the option, else RBEE_OLLAMA, else the cached build, else PATH; a missing one says how to install', t => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'rbee-ollama-bin-'));
  const fake = path.join(dir, 'ollama');
  fs.writeFileSync(fake, '#!/bin/sh\n', {mode: 0o755});
  const empty = {PATH: '', RBEE_CACHE_DIR: dir};
  t.deepEqual(ollamaProgram(fake, empty).program, fake);
  t.is(ollamaProgram(undefined, {...empty, RBEE_OLLAMA: fake}).program, fake);
  t.is(ollamaProgram(undefined, {...empty, PATH: dir}).program, fake);
  const missing = ollamaProgram(undefined, {...empty, RBEE_OLLAMA: path.join(dir, 'nope')});
  t.is(missing.program, undefined);
  t.is(
    missingOllama(missing.source),
    `no ollama program at RBEE_OLLAMA (${path.join(dir, 'nope')}): run \`rbee engines install ollama\` (or set RBEE_OLLAMA or the adapter's \`command\` option)`,
  );
  fs.rmSync(dir, {recursive: true, force: true});
});

test("the worker's model store is a private folder, reused by its restarts, and refused when it is not private", t => {
  const base = fs.mkdtempSync(path.join(os.tmpdir(), 'rbee-ollama-store-'));
  const store = workerStore('w-1', base);
  t.is(fs.statSync(store).mode & 0o777, 0o700);
  t.is(workerStore('w-1', base), store);
  fs.chmodSync(store, 0o755);
  t.throws(() => workerStore('w-1', base), {message: /not a private folder/});
  fs.rmSync(base, {recursive: true, force: true});
});
