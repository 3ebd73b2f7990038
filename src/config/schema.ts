import {z} from 'zod';
import type {RbeeAdapter} from '../adapters/adapter-api.js';
import {ApiTokenSchema} from './api-token.js';
import {DeviceSchema, id} from '../protocol/wire/fields.js';
import {AdapterOptionsSchema} from '../protocol/wire/workers.js';
import {durationIn} from './duration.js';
import {integerIn, limits} from './limits.js';

const isObject = (value: unknown): value is Record<string, unknown> => typeof value === 'object' && value !== null && !Array.isArray(value);

/** An adapter plugin: an npm package name or a path, optionally with its options, or an adapter object. */
const AdapterEntrySchema = z.union([
  z.string().min(1),
  z.tuple([z.string().min(1), z.record(z.string(), z.unknown())]),
  z.custom<RbeeAdapter>(value => isObject(value) && typeof value.name === 'string', 'an adapter object (from a factory), a package name, or a path'),
]);

/**
 * One entry of the model catalogue: a name requests may use, and how to start a worker for it when
 * one is asked for and none runs (models on demand).
 */
export const CatalogueEntrySchema = z
  .strictObject({
    /** What `rbee worker spawn --model` takes: a path, `hf:…`, or a name in the model store ("default"). */
    model: z
      .string()
      .min(1)
      .max(4_096)
      // Room is planned from the model file's size, which an engine's own model has none of.
      .refine(model => !model.startsWith('engine:'), 'engine:<name> models can be spawned by hand, not put in the catalogue (no file to plan room with)'),
    type: z.string().min(1).max(214).optional(),
    /** A device, or "auto": the device with the most free memory that fits the model's estimate, the CPU last. */
    device: z.union([z.literal('auto'), DeviceSchema]).default('auto'),
    contextSize: integerIn(limits.contextSize).optional(),
    parallel: integerIn(limits.parallel).optional(),
    threads: integerIn(limits.threads).optional(),
    /** Stopped after this long without a request (default: hive.idleTimeout). */
    idleTimeout: durationIn(limits.idleTimeoutMs).optional(),
    /** Never stopped for idleness nor to make room. */
    pin: z.boolean().default(false),
    adapterOptions: AdapterOptionsSchema.optional(),
    /** Served by a worker group over these devices (the coordinator on the first) instead of one worker. */
    group: z.strictObject({devices: z.array(DeviceSchema).min(2).max(64)}).optional(),
  })
  .superRefine((entry, context) => {
    if (entry.group !== undefined && entry.device !== 'auto') {
      context.addIssue({code: 'custom', path: ['device'], message: 'a group entry runs on group.devices: leave device out'});
    }
    if (entry.group !== undefined && entry.adapterOptions !== undefined) {
      context.addIssue({code: 'custom', path: ['adapterOptions'], message: 'worker groups take no adapter options: leave adapterOptions out of a group entry'});
    }
  });
export type CatalogueEntry = z.output<typeof CatalogueEntrySchema>;

/** Catalogue names are model names on the wire, and unique whatever their case: a request's `model` picks one. */
const CatalogueSchema = z.record(id, CatalogueEntrySchema).superRefine((entries, context) => {
  const seen = new Map<string, string>();
  for (const name of Object.keys(entries)) {
    const other = seen.get(name.toLowerCase());
    if (other !== undefined) {
      context.addIssue({code: 'custom', path: [name], message: `duplicate model name: "${name}" and "${other}" differ only in case`});
    }
    seen.set(name.toLowerCase(), name);
  }
});

/** The one schema of rbee.config.* files. Strict, so a misspelt key is an error, not a silent default. */
export const ConfigSchema = z.strictObject({
  hive: z
    .strictObject({
      host: z.string().min(1).optional(),
      port: integerIn(limits.port).optional(),
      token: ApiTokenSchema.optional(),
      heartbeatIntervalMs: integerIn(limits.heartbeatIntervalMs).optional(),
      orphanTimeoutMs: integerIn(limits.orphanTimeoutMs).optional(),
      /** Heartbeat intervals a worker may miss before the hive fails it (workers wait as many for their hive). */
      missedHeartbeats: integerIn(limits.missedHeartbeats).optional(),
      loadStallTimeoutMs: integerIn(limits.loadStallTimeoutMs).optional(),
      /** How long a worker may leave a request unanswered before the hive checks it and retries elsewhere. */
      workerTimeoutMs: integerIn(limits.workerTimeoutMs).optional(),
      stopGraceMs: integerIn(limits.stopGraceMs).optional(),
      modelDirs: z.array(z.string().min(1)).optional(),
      /** Models on demand: at most this many catalogue models loaded at once (least recently used idle ones make room). */
      maxLoadedModels: integerIn(limits.maxLoadedModels).optional(),
      /** Models on demand: the share of a device's memory (0 to 0.9) a start leaves free. */
      vramHeadroom: z.number().min(0).max(0.9).optional(),
      /** Models on demand: how long a catalogue worker may go without a request before it is stopped. */
      idleTimeout: durationIn(limits.idleTimeoutMs).optional(),
      /**
       * Keep one booted worker process ready per worker type in use (it holds no model), so a spawn
       * skips the worker process's own start, a few hundred ms (default: true).
       */
      spareWorkers: z.boolean().optional(),
      /** Models on demand: how long a request waits for its model to start. */
      modelStartTimeout: durationIn(limits.modelStartTimeoutMs).optional(),
    })
    .default({}),
  workers: z
    .strictObject({
      contextSize: integerIn(limits.contextSize).optional(),
      threads: integerIn(limits.threads).optional(),
      parallel: integerIn(limits.parallel).optional(),
      /** How long a worker's engine may take to become ready (default: its adapter's, else 10 min). */
      readyTimeoutMs: integerIn(limits.readyTimeoutMs).optional(),
    })
    .default({}),
  /** Adapter plugins, beside the built-in ones. */
  adapters: z.array(AdapterEntrySchema).default([]),
  /** The model catalogue: names a request's `model` may use, started on the first request and stopped when idle. */
  models: CatalogueSchema.default({}),
  /** Options for the built-in adapters, by worker type (e.g. `llamacpp: {engine: 'llama-server'}`). */
  types: z.record(z.string(), z.record(z.string(), z.unknown())).default({}),
});

export type RbeeConfig = z.output<typeof ConfigSchema>;
export type UserConfig = z.input<typeof ConfigSchema>;

/** Identity function: it exists so that a user's rbee.config.ts gets types. */
export function defineConfig(config: UserConfig): UserConfig {
  return config;
}
