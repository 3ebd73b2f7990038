import {z} from 'zod';

/** The one schema of rbee.config.* files. Strict, so a misspelt key is an error, not a silent default. */
export const ConfigSchema = z.strictObject({
  hive: z.strictObject({
    host: z.string().min(1).optional(),
    port: z.number().int().min(0).max(65_535).optional(),
    token: z.string().min(16, 'at least 16 characters').optional(),
    heartbeatIntervalMs: z.number().int().min(50).max(600_000).optional(),
    orphanTimeoutMs: z.number().int().min(100).max(86_400_000).optional(),
    loadStallTimeoutMs: z.number().int().min(1_000).max(86_400_000).optional(),
    stopGraceMs: z.number().int().min(0).max(600_000).optional(),
    modelDirs: z.array(z.string().min(1)).optional(),
  }).default({}),
  workers: z.strictObject({
    contextSize: z.number().int().min(128).max(1_048_576).optional(),
    threads: z.number().int().min(1).max(1_024).optional(),
    parallel: z.number().int().min(1).max(64).optional(),
  }).default({}),
});

export type RbeeConfig = z.output<typeof ConfigSchema>;
export type UserConfig = z.input<typeof ConfigSchema>;

/** Identity function: it exists so that a user's rbee.config.ts gets types. */
export function defineConfig(config: UserConfig): UserConfig {
  return config;
}
