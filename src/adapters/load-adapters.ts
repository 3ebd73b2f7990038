/**
 * Finds every adapter a hive or worker may use: the built-in ones, then those the config lists
 * (adapter objects, npm package names, or file paths, each optionally with options). Built-in
 * adapters are loaded by exactly the same path as a plugin.
 */
import fs from 'node:fs';
import {createRequire} from 'node:module';
import path from 'node:path';
import {fileURLToPath, pathToFileURL} from 'node:url';
import {RbeeError} from '../errors.js';
import {assertAdapter, type RbeeAdapter} from './adapter-api.js';

/** An entry of the config's `adapters` list. */
export type AdapterEntry = string | [string, Record<string, unknown>] | RbeeAdapter;

export type LoadedAdapter = {
  adapter: RbeeAdapter;
  source: string;
  builtIn: boolean;
  /**
   * The adapter again from its factory, with per-worker options over the config's: a worker with
   * `--adapter-option`s runs this one, and the hive calls it at spawn so the adapter's own checks
   * refuse a bad option before any process starts.
   */
  withOptions: (options: Record<string, unknown>) => Promise<RbeeAdapter>;
};

/** A plugin that could not be loaded: the rest load anyway, so one bad plugin cannot stop a hive. */
export type AdapterLoadError = {source: string; message: string};

export type AdapterSet = {adapters: LoadedAdapter[]; errors: AdapterLoadError[]};

const builtInRoot = fileURLToPath(new URL('../builtin-adapters/', import.meta.url));

/** Built-in adapters, by folder under adapters/ in the source tree. */
export const builtInAdapterModules = ['llamacpp', 'candle', 'vllm', 'tensorrt-llm', 'ollama', 'comfyui'] as const;
type BuiltInAdapterModule = (typeof builtInAdapterModules)[number];

function isPathSpecifier(specifier: string): boolean {
  return specifier.startsWith('.') || path.isAbsolute(specifier);
}

/** Resolves a package name or a path (relative to `baseDir`) to a file URL to import. */
export function resolveAdapterModule(specifier: string, baseDir: string): string {
  if (isPathSpecifier(specifier)) {
    const resolved = path.resolve(baseDir, specifier);
    if (!fs.existsSync(resolved)) {
      throw new RbeeError('not_found', `adapter ${specifier}: no such file or folder (${resolved})`);
    }
    if (fs.statSync(resolved).isDirectory()) {
      // A folder is a package: its package.json says where the entry is.
      return pathToFileURL(createRequire(path.join(resolved, 'package.json')).resolve(resolved)).href;
    }
    return pathToFileURL(resolved).href;
  }
  try {
    return pathToFileURL(createRequire(path.join(baseDir, 'package.json')).resolve(specifier)).href;
  } catch (error) {
    throw new RbeeError('not_found', `adapter ${specifier}: package not found from ${baseDir} (npm install it first)`, {cause: error});
  }
}

const typeScriptFile = /\.[cm]?ts$/;

/** Node runs JavaScript; a plugin written as a .ts file goes through jiti (as a .ts config does), so it needs no build. */
async function importModule(url: string): Promise<Record<string, unknown>> {
  if (!typeScriptFile.test(new URL(url).pathname)) {
    return (await import(url)) as Record<string, unknown>;
  }
  const {createJiti} = await import('jiti');
  return createJiti(import.meta.url, {interopDefault: false}).import<Record<string, unknown>>(fileURLToPath(url));
}

/** Imports a plugin module and turns its export (a factory or an adapter object) into a checked adapter. */
export async function importAdapter(specifier: string, options: {baseDir: string; adapterOptions?: Record<string, unknown>}): Promise<RbeeAdapter> {
  const url = resolveAdapterModule(specifier, options.baseDir);
  let module: Record<string, unknown>;
  try {
    module = await importModule(url);
  } catch (error) {
    throw new RbeeError('invalid_request', `adapter ${specifier} failed to load: ${(error as Error).message}`, {cause: error});
  }
  const exported = module.default ?? module.adapter;
  if (exported === undefined) {
    throw new RbeeError('invalid_request', `adapter ${specifier} exports nothing usable: expected a default export (an adapter factory or object)`);
  }
  let value: unknown = exported;
  if (typeof exported === 'function') {
    try {
      value = await (exported as (options?: unknown) => unknown)(options.adapterOptions);
    } catch (error) {
      throw new RbeeError('invalid_request', `adapter ${specifier}: its factory threw: ${(error as Error).message}`, {cause: error});
    }
  }
  return assertAdapter(value, specifier);
}

export function entrySource(entry: AdapterEntry): string {
  if (typeof entry === 'string') {
    return entry;
  }
  return Array.isArray(entry) ? entry[0] : `config (${String((entry as {name?: unknown}).name ?? 'unnamed')})`;
}

async function loadEntry(entry: AdapterEntry, baseDir: string, extra?: Record<string, unknown>): Promise<RbeeAdapter> {
  if (typeof entry === 'string') {
    return importAdapter(entry, {baseDir, ...(extra === undefined ? {} : {adapterOptions: extra})});
  }
  if (Array.isArray(entry)) {
    return importAdapter(entry[0], {baseDir, adapterOptions: {...entry[1], ...extra}});
  }
  if (extra !== undefined) {
    throw new RbeeError('invalid_request', `adapter ${entrySource(entry)} is an object in the config, not a factory: it takes no per-worker options`);
  }
  return assertAdapter(entry, entrySource(entry));
}

function importBuiltIn(name: BuiltInAdapterModule, adapterOptions: Record<string, unknown> | undefined, extra?: Record<string, unknown>): Promise<RbeeAdapter> {
  return importAdapter(path.join(builtInRoot, name, 'src', 'index.js'), {
    baseDir: builtInRoot,
    ...(adapterOptions === undefined && extra === undefined ? {} : {adapterOptions: {...adapterOptions, ...extra}}),
  });
}

/**
 * The built-in adapter of worker type `type` alone, with the config's options for it and a
 * worker's own over them: what a worker runs, without importing every other adapter (each costs
 * start-up time; llama.cpp's pulls in node-llama-cpp). A built-in takes its type before any
 * plugin (a plugin of the same type is refused as a clash), so this is the adapter
 * `loadAdapters` would find. Null when no built-in module has that type: load them all then.
 */
export async function loadBuiltInAdapter(
  type: string,
  options: {builtInOptions?: Record<string, Record<string, unknown>> | undefined; extra?: Record<string, unknown> | undefined},
): Promise<RbeeAdapter | null> {
  const name = builtInAdapterModules.find(module => module === type);
  if (name === undefined) {
    return null;
  }
  const adapter = await importBuiltIn(name, options.builtInOptions?.[name], options.extra);
  // Folders are named after their adapter's type; should one ever differ, the full load decides.
  return adapter.type === type ? adapter : null;
}

export async function loadAdapters(options: {
  entries: readonly AdapterEntry[];
  baseDir: string;
  builtInOptions?: Record<string, Record<string, unknown>>;
}): Promise<AdapterSet> {
  const adapters: LoadedAdapter[] = [];
  const errors: AdapterLoadError[] = [];
  const add = async (source: string, builtIn: boolean, load: (extra?: Record<string, unknown>) => Promise<RbeeAdapter>) => {
    try {
      const adapter = await load();
      const clash = adapters.find(other => other.adapter.type === adapter.type || other.adapter.name === adapter.name);
      if (clash !== undefined) {
        throw new RbeeError(
          'invalid_request',
          `adapter ${adapter.name} (${source}) clashes with ${clash.adapter.name} (${clash.source}): its type "${adapter.type}" or name is taken`,
        );
      }
      adapters.push({adapter, source, builtIn, withOptions: extra => load(extra)});
    } catch (error) {
      errors.push({source, message: (error as Error).message});
    }
  };
  for (const name of builtInAdapterModules) {
    await add(`built-in ${name}`, true, extra => importBuiltIn(name, options.builtInOptions?.[name], extra));
  }
  for (const entry of options.entries) {
    await add(entrySource(entry), false, extra => loadEntry(entry, options.baseDir, extra));
  }
  return {adapters, errors};
}
