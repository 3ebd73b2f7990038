/**
 * rbee's wire protocol: every JSON message that crosses a process boundary, as zod schemas with
 * the exact snake_case names of the spec (architecture part 10). Other people's workers and
 * dashboards speak this, so names here never change casually. Types come from z.infer only.
 */
import {z} from 'zod';

const id = z.string().min(1).max(128).regex(/^[A-Za-z0-9._:-]+$/, 'letters, digits, ".", "_", ":" and "-" only');
const bytes = z.number().int().nonnegative();
const count = z.number().int().nonnegative();

// ---------------------------------------------------------------------------------------------
// Heartbeat: worker -> hive, every 5 s. One schema: the standard fields, then the optional
// enhanced (multi-model, batch), most-enhanced (workflow) and group parts.

export const WorkerStatusSchema = z.enum(['starting', 'ready', 'busy', 'error', 'stopping']);

export const WorkflowProgressSchema = z.object({
  prompt_id: z.string().min(1),
  current_node: z.string(),
  progress: z.number().min(0).max(1),
});

export const ShardWorkerStatusSchema = z.object({
  worker_id: id,
  status: z.enum(['healthy', 'unhealthy', 'starting', 'missing']),
});

export const HeartbeatSchema = z.object({
  // standard
  worker_id: id,
  status: WorkerStatusSchema,
  model: z.string().min(1).optional(),
  device: z.string().min(1).optional(),
  vram_used: bytes.optional(),
  vram_total: bytes.optional(),
  ram_used: bytes.optional(),
  requests_total: count.optional(),
  tokens_generated: count.optional(),
  uptime_seconds: z.number().nonnegative().optional(),
  last_request_at: z.iso.datetime({offset: true}).nullable().optional(),
  adapter_type: z.string().min(1).optional(),
  backend: z.string().min(1).optional(),
  threads: z.number().int().positive().optional(),
  error: z.string().optional(),
  /** rbee extension: how far the model load has got (0..1), so the hive can tell a slow load from a stalled one. */
  load_progress: z.number().min(0).max(1).optional(),
  /** rbee extension: CPU used by the worker's process tree since its previous heartbeat, in % of one core. */
  cpu_percent: z.number().nonnegative().optional(),
  // enhanced: multi-model workers
  loaded_models: z.array(z.string()).optional(),
  vram_allocations: z.record(z.string(), bytes).optional(),
  // enhanced: batch workers
  batch_size: count.optional(),
  queue_depth: count.optional(),
  throughput_tokens_per_second: z.number().nonnegative().optional(),
  // most enhanced: workflow workers
  current_workflow: z.string().nullable().optional(),
  workflow_progress: WorkflowProgressSchema.nullable().optional(),
  // worker groups
  group_id: id.optional(),
  role: z.enum(['coordinator', 'shard']).optional(),
  coordinator: id.optional(),
  devices: z.array(z.string().min(1)).optional(),
  vram_per_device: z.record(z.string(), bytes).optional(),
  group_health: z.enum(['healthy', 'degraded']).optional(),
  shard_workers: z.array(ShardWorkerStatusSchema).optional(),
});
export type Heartbeat = z.infer<typeof HeartbeatSchema>;
export type WorkerStatus = z.infer<typeof WorkerStatusSchema>;

/**
 * A worker's GET /health (200 while it serves, 503 otherwise). A group's coordinator reads its shards'
 * to judge the group and to sum device memory for `vram_per_device`.
 */
export const WorkerHealthSchema = z.object({
  status: z.union([WorkerStatusSchema, z.literal('draining')]),
  worker_id: id,
  model: z.string(),
  error: z.string().optional(),
  /** The engine's device memory at its last heartbeat, when it measured it. */
  vram_used: bytes.optional(),
  vram_total: bytes.optional(),
});
export type WorkerHealth = z.infer<typeof WorkerHealthSchema>;

// Strict: a command is also a request body (POST /v1/workers/:id/commands), where a misspelt field must not pass.
export const HiveCommandSchema = z.discriminatedUnion('type', [
  z.strictObject({type: z.literal('shutdown'), reason: z.string().optional()}),
  z.strictObject({type: z.literal('unload_model'), model: z.string().min(1)}),
  z.strictObject({type: z.literal('drain'), reason: z.string().optional()}),
]);
export type HiveCommand = z.infer<typeof HiveCommandSchema>;

export const HeartbeatAnswerSchema = z.object({
  ack: z.boolean(),
  commands: z.array(HiveCommandSchema),
});
export type HeartbeatAnswer = z.infer<typeof HeartbeatAnswerSchema>;

// ---------------------------------------------------------------------------------------------
// rbee's own inference API: POST /v1/infer on a worker (direct) or on the hive (routed by model).
// Request bodies are strict: an unknown field is a 400 naming it, never silently ignored.

const stop = z.union([z.string().min(1), z.array(z.string().min(1)).max(16)]);
const sampling = {
  max_tokens: z.number().int().min(1).max(32_768).optional(),
  temperature: z.number().min(0).max(2).optional(),
  top_k: z.number().int().min(0).optional(),
  top_p: z.number().gt(0).max(1).optional(),
  seed: z.number().int().nonnegative().max(2 ** 32 - 1).optional(),
  stop: stop.optional(),
  stream: z.boolean().optional(),
};

export const InferRequestSchema = z.strictObject({
  prompt: z.string().min(1).max(1_000_000),
  model: z.string().min(1).optional(),
  ...sampling,
});
export type InferRequest = z.infer<typeof InferRequestSchema>;

export const FinishReasonSchema = z.enum(['stop', 'length', 'cancelled']);
export type FinishReason = z.infer<typeof FinishReasonSchema>;

export const InferResponseSchema = z.object({
  worker_id: id,
  model: z.string(),
  text: z.string(),
  tokens_generated: count,
  prompt_tokens: count,
  finish_reason: FinishReasonSchema,
  duration_ms: z.number().nonnegative(),
});
export type InferResponse = z.infer<typeof InferResponseSchema>;

/** One Server-Sent Event `data:` payload of a streamed /v1/infer. */
export const InferStreamEventSchema = z.discriminatedUnion('type', [
  z.object({type: z.literal('token'), text: z.string()}),
  InferResponseSchema.extend({type: z.literal('done')}),
  z.object({type: z.literal('error'), error: z.object({code: z.string(), message: z.string()})}),
]);
export type InferStreamEvent = z.infer<typeof InferStreamEventSchema>;

// ---------------------------------------------------------------------------------------------
// OpenAI-compatible API, the subset rbee serves. Request bodies accept every field OpenAI documents
// (clients send many, often at their defaults) and reject any other with a 400 naming it. Fields
// that would change the answer in a way rbee cannot honour (tools, penalties, logprobs, ...) are
// accepted only at their neutral value, so a client is never told "ok" for something not done.

const textPart = z.object({type: z.literal('text'), text: z.string()});
export const ChatMessageSchema = z.object({
  role: z.enum(['system', 'developer', 'user', 'assistant']),
  content: z.union([z.string(), z.array(textPart)]),
});
export type ChatMessage = z.infer<typeof ChatMessageSchema>;

const isEmpty = (value: unknown) => value === null || (Array.isArray(value) ? value.length === 0
  : typeof value === 'object' && Object.keys(value).length === 0);
/** A documented OpenAI field rbee does not implement: accepted only when it asks for nothing. */
const neutralOnly = (isNeutral: (value: unknown) => boolean, what: string) =>
  z.unknown().refine(isNeutral, `${what} is not supported by rbee; leave it out (or at its default)`).optional();

export const StreamOptionsSchema = z.strictObject({
  include_usage: z.boolean().optional(),
  include_obfuscation: z.boolean().optional(),
}).nullable();

/** Fields of both OpenAI generation routes that carry no semantics rbee must honour, or are honoured as told. */
const openAiCommon = {
  n: z.literal(1).nullable().optional(),
  stream_options: StreamOptionsSchema.optional(),
  user: z.string().max(4_096).optional(),
  frequency_penalty: neutralOnly(value => value === null || value === 0, 'a frequency penalty'),
  presence_penalty: neutralOnly(value => value === null || value === 0, 'a presence penalty'),
  logit_bias: neutralOnly(isEmpty, 'logit_bias'),
};

export const ChatCompletionRequestSchema = z.strictObject({
  model: z.string().min(1),
  messages: z.array(ChatMessageSchema).min(1).max(1_000),
  max_completion_tokens: z.number().int().min(1).max(32_768).optional(),
  ...sampling,
  ...openAiCommon,
  metadata: z.record(z.string(), z.string()).nullable().optional(),
  store: z.boolean().nullable().optional(),
  service_tier: z.string().nullable().optional(),
  prompt_cache_key: z.string().optional(),
  safety_identifier: z.string().optional(),
  parallel_tool_calls: z.boolean().optional(),
  reasoning_effort: z.string().nullable().optional(),
  verbosity: z.string().nullable().optional(),
  logprobs: neutralOnly(value => value === null || value === false, 'logprobs'),
  top_logprobs: neutralOnly(value => value === null || value === 0, 'top_logprobs'),
  response_format: neutralOnly(value => value === null || (typeof value === 'object' && (value as {type?: unknown}).type === 'text'), 'a response_format other than text'),
  tools: neutralOnly(isEmpty, 'tools'),
  tool_choice: neutralOnly(value => value === null || value === 'none' || value === 'auto', 'tool_choice'),
  functions: neutralOnly(isEmpty, 'functions'),
  function_call: neutralOnly(value => value === null || value === 'none' || value === 'auto', 'function_call'),
  modalities: neutralOnly(value => value === null || (Array.isArray(value) && value.every(item => item === 'text')), 'a modality other than text'),
  audio: neutralOnly(value => value === null, 'audio output'),
  prediction: neutralOnly(value => value === null, 'predicted outputs'),
  web_search_options: neutralOnly(value => value === null, 'web search'),
});
export type ChatCompletionRequest = z.infer<typeof ChatCompletionRequestSchema>;

export const CompletionRequestSchema = z.strictObject({
  model: z.string().min(1),
  prompt: z.string().min(1).max(1_000_000),
  ...sampling,
  ...openAiCommon,
  best_of: neutralOnly(value => value === null || value === 1, 'best_of'),
  echo: neutralOnly(value => value === null || value === false, 'echo'),
  logprobs: neutralOnly(value => value === null || value === 0, 'logprobs'),
  suffix: neutralOnly(value => value === null || value === '', 'suffix'),
});
export type CompletionRequest = z.infer<typeof CompletionRequestSchema>;

const usage = z.object({prompt_tokens: count, completion_tokens: count, total_tokens: count});
const openAiFinish = z.enum(['stop', 'length']).nullable();

export const ChatCompletionSchema = z.object({
  id: z.string(),
  object: z.literal('chat.completion'),
  created: z.number().int(),
  model: z.string(),
  choices: z.array(z.object({
    index: z.number().int(),
    message: z.object({role: z.literal('assistant'), content: z.string()}),
    finish_reason: openAiFinish,
  })),
  usage,
});
export type ChatCompletion = z.infer<typeof ChatCompletionSchema>;

export const ChatCompletionChunkSchema = z.object({
  id: z.string(),
  object: z.literal('chat.completion.chunk'),
  created: z.number().int(),
  model: z.string(),
  choices: z.array(z.object({
    index: z.number().int(),
    delta: z.object({role: z.literal('assistant').optional(), content: z.string().optional()}),
    finish_reason: openAiFinish,
  })),
  /** With `stream_options.include_usage`: null on every chunk but the last, which has no choices. */
  usage: usage.nullable().optional(),
});
export type ChatCompletionChunk = z.infer<typeof ChatCompletionChunkSchema>;

export const TextCompletionSchema = z.object({
  id: z.string(),
  object: z.literal('text_completion'),
  created: z.number().int(),
  model: z.string(),
  choices: z.array(z.object({index: z.number().int(), text: z.string(), finish_reason: openAiFinish})),
  usage: usage.nullable().optional(),
});
export type TextCompletion = z.infer<typeof TextCompletionSchema>;

export const ModelListSchema = z.object({
  object: z.literal('list'),
  data: z.array(z.object({
    id: z.string(),
    object: z.literal('model'),
    created: z.number().int(),
    owned_by: z.string(),
    /** rbee: true for a base (pretrained, not instruction-tuned) model, such as the default; absent when not known. */
    base_model: z.boolean().optional(),
    /** rbee: what a client should know before using the model (why chat answers may echo the prompt). */
    notice: z.string().optional(),
  })),
});
export type ModelList = z.infer<typeof ModelListSchema>;

// ---------------------------------------------------------------------------------------------
// Worker groups (spec 1.5): one model over several devices, a coordinator and its shards.

export const GroupRoleSchema = z.enum(['coordinator', 'shard']);
export type GroupRole = z.infer<typeof GroupRoleSchema>;

/** starting: members loading; healthy: all serve; degraded: a member is missing (no routing); failed/stopped: ended. */
export const GroupHealthSchema = z.enum(['starting', 'healthy', 'degraded', 'failed', 'stopped']);
export type GroupHealth = z.infer<typeof GroupHealthSchema>;

/** `host:port`, loopback or not: where a shard's engine listens for its coordinator. */
const endpoint = z.string().regex(/^[A-Za-z0-9.:[\]-]+:\d{1,5}$/, 'host:port');

/**
 * What the hive tells a group member's worker process (`rbee worker run --group <json>`): its
 * role, and for a coordinator the shards it drives. Crosses a process boundary, so it is validated.
 */
export const GroupMembershipSchema = z.object({
  group_id: id,
  role: GroupRoleSchema,
  coordinator: id,
  devices: z.array(z.string().min(1)).min(2).max(64),
  /** A shard's engine endpoint (it listens there); a coordinator's is unused. */
  endpoint: endpoint.nullable(),
  /** For the coordinator: each shard's worker (health at `url`/health) and engine endpoint. */
  shards: z.array(z.object({worker_id: id, device: z.string().min(1), url: z.string().url(), endpoint})).max(63),
});
export type GroupMembership = z.infer<typeof GroupMembershipSchema>;

// ---------------------------------------------------------------------------------------------
// Worker management: the hive's /v1/workers API.

export const DeviceSchema = z.string().regex(/^(cpu|metal|cuda:\d{1,2})$/, 'one of "cpu", "metal", "cuda:N"');

export const RestartPolicySchema = z.enum(['never', 'on-failure', 'always']);
export type RestartPolicy = z.infer<typeof RestartPolicySchema>;

/**
 * Per-worker options for the worker type's adapter (`--adapter-option key=value`), merged over the
 * config's options for it and checked by the adapter's own factory when the hive takes the spawn.
 */
export const AdapterOptionsSchema = z.record(
  z.string().regex(/^[A-Za-z_][A-Za-z0-9_-]{0,63}$/, 'an option name: letters, digits, "_" or "-"'),
  z.union([z.string().max(4_096), z.number(), z.boolean(), z.null()]),
).refine(options => Object.keys(options).length <= 64, 'at most 64 options');
export type AdapterOptions = z.infer<typeof AdapterOptionsSchema>;

export const SpawnWorkerRequestSchema = z.strictObject({
  model: z.string().min(1).max(4_096),
  device: DeviceSchema.default('cpu'),
  /** The worker type. Left out: the fastest type for the device, by the speeds the adapters declare (each citing its benchmark). */
  type: z.string().min(1).max(214).optional(),
  context_size: z.number().int().min(128).max(1_048_576).optional(),
  threads: z.number().int().min(1).max(1_024).optional(),
  parallel: z.number().int().min(1).max(64).optional(),
  max_queue: z.number().int().min(0).max(100_000).optional(),
  heartbeat_interval_ms: z.number().int().min(50).max(600_000).optional(),
  /** How long the engine may take to become ready, in all (default: its adapter's, else 10 min). */
  ready_timeout_ms: z.number().int().min(100).max(86_400_000).optional(),
  adapter_options: AdapterOptionsSchema.optional(),
  restart: RestartPolicySchema.default('on-failure'),
  /** Spawn even when the memory estimate says the model will not fit. */
  force: z.boolean().default(false),
  /** Only say where the worker would go and what it would take; start nothing. */
  dry_run: z.boolean().default(false),
});
export type SpawnWorkerRequestBody = z.infer<typeof SpawnWorkerRequestSchema>;
/** A spawn request once the hive has chosen its worker type: what it records and runs. */
export const WorkerSpecSchema = SpawnWorkerRequestSchema.required({type: true});
export type SpawnWorkerRequest = z.infer<typeof WorkerSpecSchema>;
/** What a client sends: the fields with defaults may be left out. */
export type SpawnWorkerRequestInput = z.input<typeof SpawnWorkerRequestSchema>;

export const WorkerStateSchema = z.enum(['starting', 'ready', 'busy', 'stopping', 'stopped', 'failed']);
export type WorkerState = z.infer<typeof WorkerStateSchema>;

export const WorkerInfoSchema = z.object({
  worker_id: id,
  type: z.string(),
  model: z.string(),
  model_path: z.string().nullable(),
  device: z.string(),
  state: WorkerStateSchema,
  reason: z.string().nullable(),
  pid: z.number().int().nullable(),
  port: z.number().int(),
  url: z.string(),
  started_at: z.string(),
  last_heartbeat_at: z.string().nullable(),
  last_heartbeat: HeartbeatSchema.nullable(),
  progress: z.object({phase: z.string(), done: count, total: count.nullable()}).nullable(),
  restart: RestartPolicySchema,
  restarts: count,
  adopted: z.boolean(),
  draining: z.boolean(),
  /** The shape it was spawned with (null: the engine's or the hive's default), so it can be spawned again alike. */
  context_size: count.nullable(),
  parallel: count.nullable(),
  threads: count.nullable(),
  max_queue: count.nullable(),
  /** Set for the members of a worker group (known before their first heartbeat). */
  group_id: id.nullable().default(null),
  role: GroupRoleSchema.nullable().default(null),
  /** Why its last process failed, kept while it restarts, so a client waiting for it can say why at once. */
  last_failure: z.string().nullable().default(null),
});
export type WorkerInfo = z.infer<typeof WorkerInfoSchema>;

/**
 * GET /v1/workers/:id/key: what opens a worker's own port (`Authorization: Bearer <key>`) for a
 * client the hive lets in, to call the worker directly. Never part of WorkerInfo (events, lists).
 */
export const WorkerKeySchema = z.object({worker_id: id, url: z.string(), key: z.string()});
export type WorkerKey = z.infer<typeof WorkerKeySchema>;

export const MemoryEstimateSchema = z.object({
  weights: bytes,
  context: bytes,
  total: bytes,
});

/** The answer to a spawn with `dry_run`: where the worker would go and whether it fits. */
export const SpawnPlanSchema = z.object({
  dry_run: z.literal(true),
  model: z.string(),
  model_path: z.string().nullable(),
  device: z.string(),
  type: z.string(),
  estimate: MemoryEstimateSchema.nullable(),
  free_memory: bytes,
  fits: z.boolean(),
  reason: z.string().nullable(),
});
export type SpawnPlan = z.infer<typeof SpawnPlanSchema>;

export const WorkerListSchema = z.object({workers: z.array(WorkerInfoSchema)});
export type WorkerList = z.infer<typeof WorkerListSchema>;

export const SpawnGroupRequestSchema = z.strictObject({
  model: z.string().min(1).max(4_096),
  /** The coordinator runs on the first, a shard on each of the others. "cpu" may repeat (one process each). */
  devices: z.array(DeviceSchema).min(2).max(64),
  /** The worker type. Left out: the fastest type whose adapter runs groups on the first device, by what the adapters declare. */
  type: z.string().min(1).max(214).optional(),
  /** The coordinator's HTTP port, the group's one endpoint (default: a free one). */
  coordinator_port: z.number().int().min(1).max(65_535).optional(),
  context_size: z.number().int().min(128).max(1_048_576).optional(),
  threads: z.number().int().min(1).max(1_024).optional(),
  parallel: z.number().int().min(1).max(64).optional(),
  heartbeat_interval_ms: z.number().int().min(50).max(600_000).optional(),
  /** Spawn even when the model is larger than the group's devices have free. */
  force: z.boolean().default(false),
  /** After a member fails, the whole group is spawned again (backoff and limits as for a worker), or not. */
  restart: RestartPolicySchema.default('on-failure'),
});
export type SpawnGroupRequest = z.infer<typeof SpawnGroupRequestSchema>;
export type SpawnGroupRequestInput = z.input<typeof SpawnGroupRequestSchema>;

export const SpawnGroupAnswerSchema = z.object({
  group_id: id,
  coordinator: z.object({worker_id: id, device: z.string(), port: z.number().int(), role: z.literal('coordinator')}),
  workers: z.array(z.object({worker_id: id, device: z.string(), role: z.literal('shard')})),
  total_vram: bytes,
  model_vram: bytes,
});
export type SpawnGroupAnswer = z.infer<typeof SpawnGroupAnswerSchema>;

/** The hive's record of a group: GET /v1/groups[/:id], and the `group` events. */
export const GroupInfoSchema = SpawnGroupAnswerSchema.extend({
  restart: RestartPolicySchema.default('on-failure'),
  restarts: count.default(0),
  model: z.string(),
  type: z.string(),
  devices: z.array(z.string()),
  health: GroupHealthSchema,
  reason: z.string().nullable(),
  /** The group's one endpoint: its coordinator's. */
  url: z.string(),
  started_at: z.string(),
});
export type GroupInfo = z.infer<typeof GroupInfoSchema>;

export const GroupListSchema = z.object({groups: z.array(GroupInfoSchema)});
export type GroupList = z.infer<typeof GroupListSchema>;

// ---------------------------------------------------------------------------------------------
// The hive's live event stream (GET /v1/events, SSE): what dashboards and `status --watch` read.

const at = z.iso.datetime({offset: true});

/** How often the hive's idle event stream carries a keep-alive comment (`: keep-alive`). */
export const eventKeepAliveMs = 2_000;
/** How long a follower waits on a silent event stream before it calls the hive hung: 3 keep-alives. */
export const eventStallMs = 3 * eventKeepAliveMs;

export const HiveEventSchema = z.discriminatedUnion('type', [
  /** First event on every connection: the whole current state, so a client needs nothing else to start. */
  z.object({
    type: z.literal('snapshot'), at, hive: z.object({url: z.string(), pid: z.number().int(), version: z.string()}),
    workers: z.array(WorkerInfoSchema), groups: z.array(GroupInfoSchema).default([]),
  }),
  z.object({type: z.literal('heartbeat'), at, worker_id: id, heartbeat: HeartbeatSchema}),
  /** A worker was spawned, changed state, or is restarting; `worker` is its full current record. */
  z.object({type: z.literal('worker'), at, change: z.enum(['spawned', 'state', 'restarting']), worker: WorkerInfoSchema}),
  /** A group was spawned or its health changed; `group` is its full current record. */
  z.object({type: z.literal('group'), at, change: z.enum(['spawned', 'health']), group: GroupInfoSchema}),
  /**
   * A request the hive routed: `started`, `progress` (streams, at most once a second) and `ended`,
   * with the worker's requests in flight through the hive and the tokens relayed since the last
   * event (counted from the answer: usage figures, or one per streamed event). Sent only while
   * someone follows the stream; lets a dashboard show busy and tok/s as they happen.
   */
  z.object({
    type: z.literal('request'), at, worker_id: id, phase: z.enum(['started', 'progress', 'ended']), in_flight: count,
    tokens: count.optional(), duration_ms: count.optional(), status: z.number().int().optional(),
  }),
]);
export type HiveEvent = z.infer<typeof HiveEventSchema>;

// ---------------------------------------------------------------------------------------------
// Hive status and errors.

export const DeviceInfoSchema = z.object({
  id: z.string(),
  name: z.string(),
  memory_total: bytes,
  memory_used: bytes,
});
export type DeviceInfo = z.infer<typeof DeviceInfoSchema>;

export const HiveStatusSchema = z.object({
  version: z.string(),
  pid: z.number().int(),
  uptime_seconds: z.number().nonnegative(),
  url: z.string(),
  workers: z.partialRecord(WorkerStateSchema, count),
  models: z.array(z.string()),
  devices: z.array(DeviceInfoSchema),
});
export type HiveStatus = z.infer<typeof HiveStatusSchema>;

export const ErrorBodySchema = z.object({
  error: z.object({code: z.string(), message: z.string()}),
});
export type ErrorBody = z.infer<typeof ErrorBodySchema>;

/**
 * Errors on the OpenAI routes, shaped as the OpenAI SDKs read them: `type` is OpenAI's class,
 * `param` the request field at fault (or null), `code` rbee's stable code. A superset of ErrorBody.
 */
export const OpenAiErrorBodySchema = z.object({
  error: z.object({message: z.string(), type: z.string(), param: z.string().nullable(), code: z.string().nullable()}),
});
export type OpenAiErrorBody = z.infer<typeof OpenAiErrorBodySchema>;
