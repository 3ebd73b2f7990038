/**
 * A heartbeat event checked without walking the zod schema, for followers that take hundreds a
 * second (the dashboard: 500 workers, one heartbeat a second each). It covers the common shape only
 * — every key known, each value of a plain kind — and answers "valid" only where HiveEventSchema
 * would accept the event and return it unchanged. Anything else (a bad value, an unknown key, a
 * nested part it does not check) is left to the schema, which then names the field at fault. So
 * it never lets through what the schema rejects, and a bad event gets the schema's own error.
 */
import {z} from 'zod';
import {type Heartbeat, WorkerStatusSchema} from './heartbeat.js';

export type HeartbeatEvent = {type: 'heartbeat'; at: string; worker_id: string; heartbeat: Heartbeat};

// The schema's own datetime check, so the two agree on every date (leap days, offsets).
const isoDateTime = z.iso.datetime({offset: true});
const idPattern = /^[A-Za-z0-9._:-]+$/;
const statuses: ReadonlySet<unknown> = new Set(WorkerStatusSchema.options);
const roles: ReadonlySet<unknown> = new Set(['coordinator', 'shard']);
const groupHealths: ReadonlySet<unknown> = new Set(['healthy', 'degraded']);

type Check = (value: unknown) => boolean;

const isId: Check = value => typeof value === 'string' && value.length >= 1 && value.length <= 128 && idPattern.test(value);
const isText: Check = value => typeof value === 'string';
const isName: Check = value => typeof value === 'string' && value.length >= 1;
// JSON numbers are finite; a non-finite one is left to the schema.
const isCount: Check = value => typeof value === 'number' && Number.isSafeInteger(value) && value >= 0;
const isNonNegative: Check = value => typeof value === 'number' && Number.isFinite(value) && value >= 0;
const isFraction: Check = value => typeof value === 'number' && value >= 0 && value <= 1;
const isPositiveInt: Check = value => typeof value === 'number' && Number.isSafeInteger(value) && value > 0;
const isDateTime: Check = value => typeof value === 'string' && isoDateTime.safeParse(value).success;
const orNull =
  (check: Check): Check =>
  value =>
    value === null || check(value);
const isWorkflowProgress: Check = value => {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    return false;
  }
  const progress = value as Record<string, unknown>;
  let keys = 0;
  for (const key in progress) {
    if (key !== 'prompt_id' && key !== 'current_node' && key !== 'progress') {
      return false;
    }
    keys++;
  }
  return keys === 3 && isName(progress.prompt_id) && isText(progress.current_node) && isFraction(progress.progress);
};

/**
 * The heartbeat's flat fields and what each must be (HeartbeatSchema's, field for field). Its
 * arrays and records (loaded_models, vram_allocations, shard_workers, …) are absent on purpose:
 * a heartbeat that has one is left to the schema.
 */
const heartbeatFields: Record<string, Check> = {
  worker_id: isId,
  status: value => statuses.has(value),
  model: isName,
  device: isName,
  vram_used: isCount,
  vram_total: isCount,
  ram_used: isCount,
  requests_total: isCount,
  tokens_generated: isCount,
  uptime_seconds: isNonNegative,
  last_request_at: orNull(isDateTime),
  adapter_type: isName,
  backend: isName,
  threads: isPositiveInt,
  error: isText,
  load_progress: isFraction,
  cpu_percent: isNonNegative,
  batch_size: isCount,
  queue_depth: isCount,
  throughput_tokens_per_second: isNonNegative,
  current_workflow: orNull(isText),
  workflow_progress: orNull(isWorkflowProgress),
  group_id: isId,
  role: value => roles.has(value),
  coordinator: isId,
  group_health: value => groupHealths.has(value),
};

function isKnownGoodHeartbeat(value: unknown): value is Heartbeat {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    return false;
  }
  const heartbeat = value as Record<string, unknown>;
  for (const key in heartbeat) {
    const check = Object.hasOwn(heartbeatFields, key) ? heartbeatFields[key] : undefined;
    if (check === undefined || !check(heartbeat[key])) {
      return false;
    }
  }
  // The two required fields: the loop checked them only if present.
  return heartbeat.worker_id !== undefined && heartbeat.status !== undefined;
}

/**
 * `value` as a heartbeat event when it certainly is a valid one of the common shape, else
 * undefined: then HiveEventSchema decides (and says what is wrong, if anything is).
 */
export function knownGoodHeartbeatEvent(value: unknown): HeartbeatEvent | undefined {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    return undefined;
  }
  const event = value as Record<string, unknown>;
  let keys = 0;
  for (const key in event) {
    if (key !== 'type' && key !== 'at' && key !== 'worker_id' && key !== 'heartbeat') {
      return undefined;
    }
    keys++;
  }
  const good = keys === 4 && event.type === 'heartbeat' && isId(event.worker_id) && isDateTime(event.at) && isKnownGoodHeartbeat(event.heartbeat);
  return good ? (event as HeartbeatEvent) : undefined;
}
