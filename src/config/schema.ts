import {z} from 'zod';
import type {RbeeAdapter} from '../adapters/adapter-api.js';
import {ApiTokenSchema} from './api-token.js';
import {integerIn, limits} from './limits.js';

const isObject = (value: unknown): value is Record<string, unknown> => typeof value === 'object' && value !== null && !Array.isArray(value);

/** An adapter plugin: an npm package name or a path, optionally with its options, or an adapter object. */
const AdapterEntrySchema = z.union([
  z.string().min(1),
  z.tuple([z.string().min(1), z.record(z.string(), z.unknown())]),
  z.custom<RbeeAdapter>(value => isObject(value) && typeof value.name === 'string', 'an adapter object (from a factory), a package name, or a path'),
]);

/** The one schema of rbee.config.* files. Strict, so a misspelt key is an error, not a silent default. */
export const ConfigSchema = z.strictObject({
  hive: z
    .strictObject({
      host: z.string().min(1).optional(),
      port: integerIn(limits.port).optional(),
      token: ApiTokenSchema.optional(),
      heartbeatIntervalMs: integerIn(limits.heartbeatIntervalMs).optional(),
      orphanTimeoutMs: integerIn(limits.orphanTimeoutMs).optional(),
      loadStallTimeoutMs: integerIn(limits.loadStallTimeoutMs).optional(),
      /** How long a worker may leave a request unanswered before the hive checks it and retries elsewhere. */
      workerTimeoutMs: integerIn(limits.workerTimeoutMs).optional(),
      stopGraceMs: integerIn(limits.stopGraceMs).optional(),
      modelDirs: z.array(z.string().min(1)).optional(),
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
  /** Options for the built-in adapters, by worker type (e.g. `llamacpp: {engine: 'llama-server'}`). */
  types: z.record(z.string(), z.record(z.string(), z.unknown())).default({}),
});

export type RbeeConfig = z.output<typeof ConfigSchema>;
export type UserConfig = z.input<typeof ConfigSchema>;

/** Identity function: it exists so that a user's rbee.config.ts gets types. */
export function defineConfig(config: UserConfig): UserConfig {
  return config;
}
