/**
 * Heartbeat: worker -> hive, every 5 s (POST /v1/heartbeat), and the hive's answer with its commands.
 * One schema: the standard fields, then the optional enhanced (multi-model, batch), most-enhanced
 * (workflow) and group parts. Also a worker's own GET /health.
 */
import {z} from 'zod';
import {bytes, count, id} from './fields.js';

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
  /**
   * rbee extension: every model name a multi-model worker answers for, loaded now or loadable on
   * demand (`loaded_models` lists only the loaded ones). The hive routes these names to it, and an
   * `unload_model` leaves such a worker running: it frees the model, it does not end.
   */
  available_models: z.array(z.string().min(1)).optional(),
  /** rbee extension: when the engine will unload each loaded model by itself (Ollama's keep-alive), by model. */
  model_expires_at: z.record(z.string(), z.iso.datetime({offset: true})).optional(),
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
