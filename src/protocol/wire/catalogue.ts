/** Models on demand: the catalogue's state (GET /v1/catalogue) and the hive's autoscale decisions (events). */
import {z} from 'zod';
import {bytes, count, id} from './fields.js';

/** cold: no worker; starting: one is loading; ready: serving, a request within its idle timeout; idle: serving, none for a while. */
export const CatalogueStateSchema = z.enum(['cold', 'starting', 'ready', 'idle']);
export type CatalogueState = z.infer<typeof CatalogueStateSchema>;

export const CatalogueModelSchema = z.object({
  name: z.string(),
  model: z.string(),
  type: z.string().nullable(),
  device: z.string(),
  pinned: z.boolean(),
  idle_timeout_ms: count.nullable(),
  state: CatalogueStateSchema,
  worker_id: id.nullable(),
  /** When its worker last had a request through the hive (or began to serve). */
  idle_since: z.string().nullable(),
});
export type CatalogueModel = z.infer<typeof CatalogueModelSchema>;

export const AutoscaleActionSchema = z.enum(['started-for-request', 'stopped-idle', 'evicted-for', 'refused-for']);
export type AutoscaleAction = z.infer<typeof AutoscaleActionSchema>;

/** The memory figures a decision was made on, for the device it concerns. */
export const AutoscaleFiguresSchema = z.object({need: bytes, free: bytes, headroom: bytes});

/**
 * A models-on-demand decision: a worker started for a request, stopped for idleness, stopped to
 * make room for another model (`for`), or a start refused; with why and the memory figures. Sent
 * on /v1/events; the latest are kept in the catalogue's answer.
 */
export const AutoscaleEventSchema = z.object({
  type: z.literal('autoscale'),
  at: z.iso.datetime({offset: true}),
  action: AutoscaleActionSchema,
  model: z.string(),
  worker_id: id.nullable(),
  device: z.string().nullable(),
  /** For an eviction: the model it made room for. */
  for: z.string().nullable(),
  reason: z.string(),
  figures: AutoscaleFiguresSchema.nullable(),
});
export type AutoscaleEvent = z.infer<typeof AutoscaleEventSchema>;

export const CatalogueListSchema = z.object({
  models: z.array(CatalogueModelSchema),
  /** The latest decisions, oldest first. */
  decisions: z.array(AutoscaleEventSchema),
});
export type CatalogueList = z.infer<typeof CatalogueListSchema>;
