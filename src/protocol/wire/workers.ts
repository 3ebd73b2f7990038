/** Worker management: the hive's /v1/workers API. */
import {z} from 'zod';
import {integerIn, limits} from '../../config/limits.js';
import {bytes, count, DeviceSchema, id, RestartPolicySchema} from './fields.js';
import {GroupRoleSchema} from './groups.js';
import {HeartbeatSchema} from './heartbeat.js';

/**
 * Per-worker options for the worker type's adapter (`--adapter-option key=value`), merged over the
 * config's options for it and checked by the adapter's own factory when the hive takes the spawn.
 */
export const AdapterOptionsSchema = z
  .record(
    z.string().regex(/^[A-Za-z_][A-Za-z0-9_-]{0,63}$/, 'an option name: letters, digits, "_" or "-"'),
    z.union([z.string().max(4_096), z.number(), z.boolean(), z.null()]),
  )
  .refine(options => Object.keys(options).length <= 64, 'at most 64 options');
export type AdapterOptions = z.infer<typeof AdapterOptionsSchema>;

export const SpawnWorkerRequestSchema = z.strictObject({
  model: z.string().min(1).max(4_096),
  device: DeviceSchema.default('cpu'),
  /** The worker type. Left out: the fastest type for the device, by the speeds the adapters declare (each citing its benchmark). */
  type: z.string().min(1).max(214).optional(),
  context_size: integerIn(limits.contextSize).optional(),
  threads: integerIn(limits.threads).optional(),
  parallel: integerIn(limits.parallel).optional(),
  max_queue: integerIn(limits.maxQueue).optional(),
  heartbeat_interval_ms: integerIn(limits.heartbeatIntervalMs).optional(),
  /** How long the engine may take to become ready, in all (default: its adapter's, else 10 min). */
  ready_timeout_ms: integerIn(limits.readyTimeoutMs).optional(),
  adapter_options: AdapterOptionsSchema.optional(),
  /**
   * The engine program (or install folder) the type's adapter runs, an absolute path: set as the
   * adapter option its adapter declares for it (`engineOption`). Needs `type`.
   */
  engine: z.string().min(1).max(4_096).optional(),
  /** One more name requests may use for its model (a catalogue entry's name, say). */
  name: id.optional(),
  /** Stopped after this long without a request through the hive (left out: never). */
  idle_timeout_ms: integerIn(limits.idleTimeoutMs).optional(),
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
  /**
   * What the hive itself routed to it since it was spawned, counted as requests pass, so these are
   * current the moment a request ends; the worker's own figures (last_heartbeat) lag by up to a
   * heartbeat and count requests sent to it directly too.
   */
  requests_routed: count.default(0),
  tokens_relayed: count.default(0),
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
