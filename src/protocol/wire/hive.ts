/** The hive itself: its status, health, shutdown and adapters, and the error bodies of every route. */
import {z} from 'zod';
import {bytes, count} from './fields.js';
import {WorkerStateSchema} from './workers.js';

export const DeviceInfoSchema = z.object({
  id: z.string(),
  name: z.string(),
  memory_total: bytes,
  memory_used: bytes,
});
export type DeviceInfo = z.infer<typeof DeviceInfoSchema>;

/**
 * A spare worker process: booted and imported ahead of time, holding no model, waiting for the
 * next worker of its type (src/hive/spare-workers.ts). `booted`: its imports are done.
 */
export const SpareInfoSchema = z.object({
  type: z.string(),
  worker_id: z.string(),
  pid: z.number().int(),
  booted: z.boolean(),
});
export type SpareInfo = z.infer<typeof SpareInfoSchema>;

/**
 * What the hive writes to a spare's stdin, one JSON line: the `rbee worker run` arguments of the
 * worker it becomes and that worker's whole environment (its credentials included, never argv).
 */
export const SpareAssignmentSchema = z.strictObject({
  args: z.array(z.string()).min(2),
  env: z.record(z.string(), z.string()),
});
export type SpareAssignment = z.infer<typeof SpareAssignmentSchema>;

export const HiveStatusSchema = z.object({
  version: z.string(),
  pid: z.number().int(),
  uptime_seconds: z.number().nonnegative(),
  url: z.string(),
  workers: z.partialRecord(WorkerStateSchema, count),
  models: z.array(z.string()),
  devices: z.array(DeviceInfoSchema),
  /** Spare worker processes waiting for a spawn (absent from hives before they existed). */
  spares: z.array(SpareInfoSchema).optional(),
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

/** GET /health: answers while the hive serves. */
export const HiveHealthSchema = z.object({status: z.literal('ok'), version: z.string()});
export type HiveHealth = z.infer<typeof HiveHealthSchema>;

/** POST /v1/shutdown (202): the hive answers first, then stops its workers and closes. */
export const ShutdownAnswerSchema = z.object({status: z.literal('stopping')});
export type ShutdownAnswer = z.infer<typeof ShutdownAnswerSchema>;

/** GET /v1/adapters: the worker types the hive loaded, and the plugins it could not load. */
export const AdapterListSchema = z.object({
  adapters: z.array(
    z.object({
      name: z.string(),
      type: z.string(),
      description: z.string().nullable(),
      source: z.string(),
      built_in: z.boolean(),
    }),
  ),
  errors: z.array(z.object({source: z.string(), message: z.string()})),
});
export type AdapterList = z.infer<typeof AdapterListSchema>;
