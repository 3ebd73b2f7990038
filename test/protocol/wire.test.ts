/** The spec's own example messages parse unchanged; broken ones are rejected naming each bad field. */
import test from 'ava';
import type {z} from 'zod';
import {parseWire} from '../../src/protocol/parse.js';
import {
  ChatCompletionRequestSchema,
  CompletionRequestSchema,
  HiveCommandSchema,
  HeartbeatAnswerSchema,
  HeartbeatSchema,
  InferRequestSchema,
  InferResponseSchema,
  SpawnGroupAnswerSchema,
  SpawnGroupRequestSchema,
  SpawnWorkerRequestSchema,
  cudaIndex,
} from '../../src/protocol/wire.js';

const roundTrip = test.macro({
  exec(t, schema: z.ZodType, message: Record<string, unknown>) {
    const parsed = parseWire(schema, message, 'message');
    if (!parsed.ok) {
      t.fail(parsed.message);
      return;
    }
    t.deepEqual(JSON.parse(JSON.stringify(parsed.value)), message);
  },
  title: (name = '') => `round trip: ${name}`,
});

const rejects = test.macro({
  exec(t, schema: z.ZodType, message: unknown, fields: string[]) {
    const parsed = parseWire(schema, message, 'message');
    t.false(parsed.ok);
    if (!parsed.ok) {
      t.deepEqual(parsed.issues.map(issue => issue.field).sort(), [...fields].sort());
      for (const field of fields) {
        t.true(parsed.message.includes(`\`${field}\``), `message names ${field}: ${parsed.message}`);
      }
    }
  },
  title: (name = '') => `rejects: ${name}`,
});

test('standard heartbeat (spec)', roundTrip, HeartbeatSchema, {
  worker_id: 'worker-abc123',
  status: 'ready',
  model: 'meta-llama/Llama-3-8b',
  device: 'cuda:0',
  vram_used: 8589934592,
  vram_total: 25769803776,
  requests_total: 42,
  tokens_generated: 10523,
  uptime_seconds: 3600,
  last_request_at: '2025-10-23T12:00:00Z',
});

test('llama.cpp adapter heartbeat (spec)', roundTrip, HeartbeatSchema, {
  worker_id: 'adapter-llama-cpp-xyz',
  status: 'ready',
  adapter_type: 'llama.cpp',
  model: 'llama-3-8b.Q4_K_M.gguf',
  backend: 'cpu',
  threads: 16,
  vram_used: 0,
  ram_used: 4294967296,
  requests_total: 10,
});

test('enhanced vLLM heartbeat with batch fields (spec)', roundTrip, HeartbeatSchema, {
  worker_id: 'adapter-vllm-abc',
  status: 'ready',
  adapter_type: 'vllm',
  loaded_models: ['meta-llama/Llama-3-8b', 'mistralai/Mistral-7B-v0.1'],
  vram_allocations: {'meta-llama/Llama-3-8b': 8589934592, 'mistralai/Mistral-7B-v0.1': 7516192768},
  vram_used: 16106127360,
  vram_total: 25769803776,
  requests_total: 156,
  batch_size: 8,
  queue_depth: 12,
  throughput_tokens_per_second: 256.5,
});

test('most enhanced ComfyUI heartbeat (spec)', roundTrip, HeartbeatSchema, {
  worker_id: 'adapter-comfyui-123',
  status: 'busy',
  adapter_type: 'comfyui',
  loaded_models: ['sd-v1-5.safetensors', 'controlnet-canny.safetensors', 'vae-ft-mse.safetensors', 'lora-style.safetensors'],
  vram_used: 18253611008,
  vram_total: 25769803776,
  current_workflow: 'workflow-xyz',
  workflow_progress: {prompt_id: 'prompt-abc', current_node: 'sampler', progress: 0.65},
  requests_total: 23,
});

test('group coordinator heartbeat (spec)', roundTrip, HeartbeatSchema, {
  worker_id: 'worker-abc-0',
  group_id: 'worker-group-abc',
  status: 'ready',
  role: 'coordinator',
  model: 'meta-llama/Llama-3-70b',
  devices: ['cuda:0', 'cuda:1', 'cuda:2', 'cuda:3'],
  vram_per_device: {'cuda:0': 20000000000, 'cuda:1': 18000000000, 'cuda:2': 18000000000, 'cuda:3': 14000000000},
  vram_total: 103079215104,
  group_health: 'healthy',
  shard_workers: [
    {worker_id: 'worker-abc-1', status: 'healthy'},
    {worker_id: 'worker-abc-2', status: 'healthy'},
    {worker_id: 'worker-abc-3', status: 'healthy'},
  ],
});

test('group shard heartbeat (spec)', roundTrip, HeartbeatSchema, {
  worker_id: 'worker-abc-1',
  group_id: 'worker-group-abc',
  status: 'ready',
  role: 'shard',
  coordinator: 'worker-abc-0',
  device: 'cuda:1',
  vram_used: 18000000000,
  vram_total: 25769803776,
});

test('hive answer with commands (spec)', roundTrip, HeartbeatAnswerSchema, {
  ack: true,
  commands: [{type: 'unload_model', model: 'old-model'}, {type: 'shutdown', reason: 'maintenance'}, {type: 'drain'}],
});

test('spawn-group request', roundTrip, SpawnGroupRequestSchema, {
  model: 'meta-llama/Llama-3-70b',
  devices: ['cuda:0', 'cuda:1', 'cuda:2', 'cuda:3'],
  type: 'llamacpp',
  coordinator_port: 9001,
  force: false,
  restart: 'on-failure',
});

test('spawn-group answer (spec)', roundTrip, SpawnGroupAnswerSchema, {
  group_id: 'worker-group-abc',
  coordinator: {worker_id: 'worker-abc-0', device: 'cuda:0', port: 9001, role: 'coordinator'},
  workers: [
    {worker_id: 'worker-abc-1', device: 'cuda:1', role: 'shard'},
    {worker_id: 'worker-abc-2', device: 'cuda:2', role: 'shard'},
    {worker_id: 'worker-abc-3', device: 'cuda:3', role: 'shard'},
  ],
  total_vram: 103079215104,
  model_vram: 70000000000,
});

test('infer request', roundTrip, InferRequestSchema, {prompt: 'Hello!', max_tokens: 100, temperature: 0, seed: 7, stop: ['\n'], stream: true});

test('infer response', roundTrip, InferResponseSchema, {
  worker_id: 'worker-1',
  model: 'm',
  text: 'hi',
  tokens_generated: 1,
  prompt_tokens: 2,
  finish_reason: 'stop',
  duration_ms: 12,
});

test('cudaIndex reads N of cuda:N only', t => {
  t.is(cudaIndex('cuda:0'), 0);
  t.is(cudaIndex('cuda:12'), 12);
  for (const device of ['cpu', 'metal', 'cuda:', 'cuda:1,2', 'cuda:x', ' cuda:1']) {
    t.is(cudaIndex(device), undefined, device);
  }
});

test('spawn request gets its defaults', t => {
  const parsed = SpawnWorkerRequestSchema.parse({model: 'default'});
  t.is(parsed.device, 'cpu');
  t.is(parsed.type, undefined, 'left to the hive: the fastest worker type for the device, by what the adapters declare');
  t.is(parsed.restart, 'on-failure');
});

test(
  'heartbeat: wrong types and values',
  rejects,
  HeartbeatSchema,
  {worker_id: 'w', status: 'sleeping', vram_used: -5, requests_total: 1.5, last_request_at: 'yesterday'},
  ['status', 'vram_used', 'requests_total', 'last_request_at'],
);
test('heartbeat: missing worker_id', rejects, HeartbeatSchema, {status: 'ready'}, ['worker_id']);
test('heartbeat: worker id with a slash', rejects, HeartbeatSchema, {worker_id: '../etc', status: 'ready'}, ['worker_id']);
test(
  'heartbeat: workflow progress above 1',
  rejects,
  HeartbeatSchema,
  {worker_id: 'w', status: 'busy', workflow_progress: {prompt_id: 'p', current_node: 'n', progress: 1.5}},
  ['workflow_progress.progress'],
);
test('answer: unknown command', rejects, HeartbeatAnswerSchema, {ack: true, commands: [{type: 'explode'}]}, ['commands.0.type']);
test('infer: empty prompt, huge max_tokens', rejects, InferRequestSchema, {prompt: '', max_tokens: 10_000_000}, ['prompt', 'max_tokens']);
test('chat: no messages, bad role', rejects, ChatCompletionRequestSchema, {model: 'm', messages: [{role: 'robot', content: 'x'}]}, ['messages.0.role']);
test('spawn: device not of the known forms', rejects, SpawnWorkerRequestSchema, {model: 'x', device: 'gpu0'}, ['device']);
test('spawn-group: a single device', rejects, SpawnGroupRequestSchema, {model: 'x', devices: ['cuda:0']}, ['devices']);
test('a body that is not an object', rejects, InferRequestSchema, 'prompt', ['(body)']);

// Request bodies are strict: an unknown field is named, never ignored (a `dry_run` the group API
// does not know once spawned real groups).
test('spawn-group: an unknown field', rejects, SpawnGroupRequestSchema, {model: 'x', devices: ['cpu', 'cpu'], dry_run: true}, ['dry_run']);
test('spawn: unknown fields', rejects, SpawnWorkerRequestSchema, {model: 'x', dryrun: true, nested: {a: 1}}, ['dryrun', 'nested']);
test('infer: a misspelt field', rejects, InferRequestSchema, {prompt: 'x', max_token: 4}, ['max_token']);
test('worker command: an unknown field', rejects, HiveCommandSchema, {type: 'drain', force: true}, ['force']);
test('chat: a field OpenAI does not document', rejects, ChatCompletionRequestSchema, {model: 'm', messages: [{role: 'user', content: 'x'}], dry_run: true}, [
  'dry_run',
]);
test(
  'chat: documented fields rbee cannot honour, set',
  rejects,
  ChatCompletionRequestSchema,
  {model: 'm', messages: [{role: 'user', content: 'x'}], tools: [{type: 'function'}], logprobs: true, presence_penalty: 1},
  ['tools', 'logprobs', 'presence_penalty'],
);
test('completion: echo asked for', rejects, CompletionRequestSchema, {model: 'm', prompt: 'x', echo: true}, ['echo']);
test('chat: documented fields at their defaults, as SDKs send them', roundTrip, ChatCompletionRequestSchema, {
  model: 'm',
  messages: [{role: 'user', content: 'x'}],
  stream: true,
  stream_options: {include_usage: true},
  n: 1,
  user: 'u',
  frequency_penalty: 0,
  presence_penalty: 0,
  logit_bias: {},
  logprobs: false,
  tools: [],
  tool_choice: 'none',
  response_format: {type: 'text'},
  metadata: {a: 'b'},
  store: false,
  parallel_tool_calls: true,
  seed: 1,
});
test('a heartbeat may carry fields of a newer worker (not a request body: stays open)', roundTrip, HeartbeatSchema, {worker_id: 'w', status: 'ready'});
test('heartbeat extension fields pass', t => {
  t.true(parseWire(HeartbeatSchema, {worker_id: 'w', status: 'ready', kv_cache_usage: 0.4}, 'heartbeat').ok);
});
