/**
 * Worker groups (spec 1.5): one model over several devices, a coordinator and its shards. What the
 * hive tells a member process, and the hive's /v1/groups API.
 */
import {z} from 'zod';
import {integerIn, limits} from '../../config/limits.js';
import {bytes, count, DeviceSchema, id, RestartPolicySchema} from './fields.js';

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
  /** The member's place in the group: the coordinator is 0, shard i is i (a tensor-parallel rank). */
  rank: z.number().int().min(0).max(63).optional(),
  /** A shard's engine endpoint (it listens there); a coordinator's is unused. */
  endpoint: endpoint.nullable(),
  /** For the coordinator: each shard's worker (health at `url`/health) and engine endpoint. */
  shards: z.array(z.object({worker_id: id, device: z.string().min(1), url: z.string().url(), endpoint})).max(63),
});
export type GroupMembership = z.infer<typeof GroupMembershipSchema>;

export const SpawnGroupRequestSchema = z.strictObject({
  model: z.string().min(1).max(4_096),
  /** The coordinator runs on the first, a shard on each of the others. "cpu" may repeat (one process each). */
  devices: z.array(DeviceSchema).min(2).max(64),
  /** The worker type. Left out: the fastest type whose adapter runs groups on the first device, by what the adapters declare. */
  type: z.string().min(1).max(214).optional(),
  /** The coordinator's HTTP port, the group's one endpoint (default: a free one). */
  coordinator_port: integerIn({min: 1, max: limits.port.max}).optional(),
  context_size: integerIn(limits.contextSize).optional(),
  threads: integerIn(limits.threads).optional(),
  parallel: integerIn(limits.parallel).optional(),
  heartbeat_interval_ms: integerIn(limits.heartbeatIntervalMs).optional(),
  /** Spawn even when the model is larger than the group's devices have free. */
  force: z.boolean().default(false),
  /** After a member fails, the whole group is spawned again (backoff and limits as for a worker), or not. */
  restart: RestartPolicySchema.default('on-failure'),
  /** One more name requests may use for the group's model (a catalogue entry's name, say). */
  name: id.optional(),
  /** The whole group is stopped after this long without a request through the hive (left out: never). */
  idle_timeout_ms: integerIn(limits.idleTimeoutMs).optional(),
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
