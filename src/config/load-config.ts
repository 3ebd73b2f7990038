import fs from 'node:fs';
import path from 'node:path';
import {cosmiconfig, type Loader} from 'cosmiconfig';
import {RbeeError} from '../errors.js';
import {homeConfigPath} from './env.js';
import {parseWire} from '../protocol/parse.js';
import {ConfigSchema, type RbeeConfig} from './schema.js';

export type LoadedConfig = {config: RbeeConfig; filepath: string | null};

/**
 * The TypeScript loader, imported only when a .ts config is found: it takes ~50-100 ms to import,
 * and every command (a worker's start, too) loads the config.
 */
const typeScriptLoader: Loader = async (filepath, content) => {
  const {TypeScriptLoader} = await import('cosmiconfig-typescript-loader');
  return TypeScriptLoader()(filepath, content);
};

/**
 * Finds rbee.config.{ts,mjs,js,json,yaml} from `cwd` up (or loads `explicitPath`), else the home's
 * rbee.config.json (where `rbee adapter add` writes), and validates it. `.ts` goes through jiti, so users need no TypeScript installed.
 */
export async function loadConfig(options: {cwd?: string; explicitPath?: string | undefined; env?: NodeJS.ProcessEnv} = {}): Promise<LoadedConfig> {
  const cwd = options.cwd ?? process.cwd();
  const explorer = cosmiconfig('rbee', {
    loaders: {'.ts': typeScriptLoader, '.mts': typeScriptLoader},
    searchPlaces: [
      'rbee.config.ts',
      'rbee.config.mts',
      'rbee.config.js',
      'rbee.config.mjs',
      'rbee.config.cjs',
      'rbee.config.json',
      'rbee.config.yaml',
      'rbee.config.yml',
      '.rbeerc',
      '.rbeerc.json',
      '.rbeerc.yaml',
      'package.json',
    ],
    // Up to the filesystem root, not only the home folder: hives often run from /srv or /opt.
    searchStrategy: 'global',
    stopDir: path.parse(path.resolve(cwd)).root,
  });
  let found;
  try {
    if (options.explicitPath !== undefined) {
      found = await explorer.load(options.explicitPath);
    } else {
      found = await explorer.search(cwd);
      const home = homeConfigPath(options.env);
      if (found === null && fs.existsSync(home)) {
        found = await explorer.load(home);
      }
    }
  } catch (error) {
    const where = (error as {filepath?: unknown}).filepath ?? options.explicitPath ?? `the rbee config found from ${cwd}`;
    throw new RbeeError('invalid_request', `config ${String(where)} failed to load: ${firstCauseLine(error)}`, {cause: error});
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

/**
 * The line of a loader's error that says what is wrong. Loaders wrap the real error under a
 * generic heading ("TypeScriptLoader failed to compile TypeScript:"), and a CLI prints one line.
 */
export function firstCauseLine(error: unknown): string {
  const lines = (error instanceof Error ? error.message : String(error))
    .split('\n')
    .map(line => line.trim())
    .filter(line => line !== '');
  const meaningful = lines.length > 1 && lines[0]!.endsWith(':') ? lines.slice(1) : lines;
  const [first, next] = meaningful;
  if (first === undefined) {
    return error instanceof Error && error.cause !== undefined ? firstCauseLine(error.cause) : 'unknown error';
  }
  // A parse error's position comes on its own line: keep it with the message.
  const position = next !== undefined && /:\d+:\d+\)?$/.test(next) ? ` (at ${next.replace(/^at\s+/, '')})` : '';
  return `${first}${position}`;
}
