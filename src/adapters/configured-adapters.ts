import path from 'node:path';
import {loadConfig, type LoadedConfig} from '../config/load-config.js';
import type {RbeeAdapter} from './adapter-api.js';
import {loadAdapters, loadBuiltInAdapter, type AdapterSet} from './load-adapters.js';

/** The adapters a config makes available (the built-in ones first), with plugin paths relative to the config file. */
export async function adaptersOf(loaded: LoadedConfig): Promise<AdapterSet> {
  return loadAdapters({
    entries: loaded.config.adapters,
    baseDir: loaded.filepath === null ? process.cwd() : path.dirname(loaded.filepath),
    builtInOptions: loaded.config.types,
  });
}

/** The config at `configPath` (none: the one found from the working folder, else defaults). */
export function loadConfigAt(configPath: string | undefined): Promise<LoadedConfig> {
  return configPath === undefined ? loadConfig({cwd: process.cwd(), explicitPath: undefined}) : loadConfig({explicitPath: configPath});
}

/**
 * The adapter of one worker type with a worker's own options over the config's, the one the hive
 * finds among `adaptersOf` the same config; a built-in type imports its module alone (a worker's
 * start-up time), anything else loads every adapter. Null, with what was loaded, when no adapter has the type.
 */
export async function loadConfiguredAdapter(
  type: string,
  configPath: string | undefined,
  adapterOptions: Record<string, unknown> | undefined,
): Promise<{adapter: RbeeAdapter} | {adapter: null; loaded: AdapterSet}> {
  const loaded = await loadConfigAt(configPath);
  // A built-in that fails to load is loaded again below, so its failure is told the same way.
  const builtIn = await loadBuiltInAdapter(type, {builtInOptions: loaded.config.types, extra: adapterOptions}).catch(() => null);
  if (builtIn !== null) {
    return {adapter: builtIn};
  }
  const set = await adaptersOf(loaded);
  const found = set.adapters.find(entry => entry.adapter.type === type);
  if (found === undefined) {
    return {adapter: null, loaded: set};
  }
  return {adapter: adapterOptions === undefined ? found.adapter : await found.withOptions(adapterOptions)};
}
