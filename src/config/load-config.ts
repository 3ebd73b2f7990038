import {cosmiconfig} from 'cosmiconfig';
import {TypeScriptLoader} from 'cosmiconfig-typescript-loader';
import {RbeeError} from '../errors.js';
import {parseWire} from '../protocol/parse.js';
import {ConfigSchema, type RbeeConfig} from './schema.js';

export type LoadedConfig = {config: RbeeConfig; filepath: string | null};

/**
 * Finds rbee.config.{ts,mjs,js,json,yaml} from `cwd` up (or loads `explicitPath`) and validates
 * it. `.ts` goes through jiti, so users need no TypeScript installed.
 */
export async function loadConfig(options: {cwd?: string; explicitPath?: string} = {}): Promise<LoadedConfig> {
  const explorer = cosmiconfig('rbee', {
    loaders: {'.ts': TypeScriptLoader(), '.mts': TypeScriptLoader()},
    searchStrategy: 'global',
  });
  let found;
  try {
    found = options.explicitPath === undefined
      ? await explorer.search(options.cwd)
      : await explorer.load(options.explicitPath);
  } catch (error) {
    const where = options.explicitPath ?? 'rbee config';
    throw new RbeeError('invalid_request', `failed to load config from ${where}: ${(error as Error).message}`, {cause: error});
  }
  if (found === null || found.isEmpty === true) {
    return {config: ConfigSchema.parse({}), filepath: found?.filepath ?? null};
  }
  const raw: unknown = typeof found.config === 'function' ? await found.config() : found.config;
  const parsed = parseWire(ConfigSchema, raw, `config ${found.filepath}`);
  if (!parsed.ok) {
    throw new RbeeError('invalid_request', parsed.message);
  }
  return {config: parsed.value, filepath: found.filepath};
}
