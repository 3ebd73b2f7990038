import path from 'node:path';
import {loadConfig, type LoadedConfig} from '../config/load-config.js';
import {loadAdapters, type AdapterSet} from './load-adapters.js';

/** The adapters a config makes available (the built-in ones first), with plugin paths relative to the config file. */
export async function adaptersOf(loaded: LoadedConfig): Promise<AdapterSet> {
  return loadAdapters({
    entries: loaded.config.adapters,
    baseDir: loaded.filepath === null ? process.cwd() : path.dirname(loaded.filepath),
    builtInOptions: loaded.config.types,
  });
}

/** Loads the config at `configPath` (none: defaults) and its adapters. */
export async function loadConfiguredAdapters(configPath: string | undefined): Promise<AdapterSet & {loaded: LoadedConfig}> {
  const loaded = configPath === undefined ? await loadConfig({cwd: process.cwd(), explicitPath: undefined}) : await loadConfig({explicitPath: configPath});
  return {loaded, ...(await adaptersOf(loaded))};
}
