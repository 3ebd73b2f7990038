/**
 * What the model cache (RBEE_HOME/models) holds, as `rbee model list` shows it, and removing one
 * entry with its sidecar. The layout is the resolvers': `default/<file>` for the default model and
 * `hf/<org>/<repo>/<revision>/<path>` for `hf:` references; a file's checksum sidecar
 * (cache-checksum.ts) records the digest it was downloaded and verified with.
 */
import fs from 'node:fs';
import path from 'node:path';
import {RbeeError} from '../errors.js';
import {checksumSidecarPath} from './cache-checksum.js';
import {defaultModelPath} from './default-model.js';
import {hfModelCachePath} from './hf-model.js';
import {modelNameFromFile, parseModelRef} from './model-ref.js';

export type CachedModel = {
  /** The reference that resolves to this file (`default`, `hf:org/repo[@rev]:file`). */
  ref: string;
  name: string;
  path: string;
  size: number;
  /** From the checksum sidecar (the hub's digest, or the one computed as the download ended); null without one. */
  sha256: string | null;
};

/** Files that belong to an entry or to a download in progress, not entries themselves. */
const bookkeeping = /\.(sha256|part|lock|tmp)$/;

function sidecarDigest(file: string): string | null {
  try {
    const text = fs.readFileSync(checksumSidecarPath(file), 'utf8').trim();
    const digest = /^[0-9a-f]{64}$/i.test(text) ? text : (JSON.parse(text) as {sha256?: unknown}).sha256;
    return typeof digest === 'string' && /^[0-9a-f]{64}$/i.test(digest) ? digest.toLowerCase() : null;
  } catch {
    return null;
  }
}

function filesUnder(dir: string): string[] {
  let entries: fs.Dirent[];
  try {
    entries = fs.readdirSync(dir, {withFileTypes: true});
  } catch {
    return [];
  }
  return entries.flatMap(entry => {
    // Hidden: wheels the default model is assembled from, temporary files.
    if (entry.name.startsWith('.')) {
      return [];
    }
    const full = path.join(dir, entry.name);
    if (entry.isDirectory()) {
      return filesUnder(full);
    }
    return entry.isFile() && !bookkeeping.test(entry.name) ? [full] : [];
  });
}

function entryFor(file: string, ref: string): CachedModel {
  return {ref, name: modelNameFromFile(file), path: file, size: fs.statSync(file).size, sha256: sidecarDigest(file)};
}

/** The hf: reference a cached file came from, rebuilt from where the resolver put it. */
function hfRefOf(relative: string[]): string | null {
  const [org, repo, revision, ...file] = relative;
  if (org === undefined || repo === undefined || revision === undefined || file.length === 0) {
    return null;
  }
  const decoded = decodeURIComponent(revision);
  return `hf:${org}/${repo}${decoded === 'main' ? '' : `@${decoded}`}:${file.join('/')}`;
}

export function listCachedModels(modelsDir: string): CachedModel[] {
  const models: CachedModel[] = [];
  const defaultFile = defaultModelPath(modelsDir);
  for (const file of filesUnder(path.join(modelsDir, 'default'))) {
    models.push(entryFor(file, file === defaultFile ? 'default' : path.relative(modelsDir, file)));
  }
  const hfRoot = path.join(modelsDir, 'hf');
  for (const file of filesUnder(hfRoot)) {
    models.push(entryFor(file, hfRefOf(path.relative(hfRoot, file).split(path.sep)) ?? file));
  }
  return models.sort((a, b) => a.ref.localeCompare(b.ref));
}

/** The cached entry a reference or a path names; not_found when the cache has no such file. */
export function findCachedModel(modelsDir: string, refOrPath: string): CachedModel {
  const models = listCachedModels(modelsDir);
  const byRef = models.find(model => model.ref === refOrPath);
  if (byRef !== undefined) {
    return byRef;
  }
  let wanted: string | null = null;
  try {
    const parsed = parseModelRef(refOrPath);
    wanted =
      parsed.kind === 'default'
        ? defaultModelPath(modelsDir)
        : parsed.kind === 'hf'
          ? hfModelCachePath(parsed, modelsDir)
          : parsed.kind === 'engine'
            ? null
            : path.resolve(parsed.path);
  } catch {
    wanted = path.resolve(refOrPath);
  }
  const byPath = models.find(model => model.path === wanted);
  if (byPath === undefined) {
    throw new RbeeError(
      'model_not_found',
      `no cached model "${refOrPath}" in ${modelsDir} (see \`rbee model list\`; files outside the cache are yours to delete)`,
    );
  }
  return byPath;
}

/** Deletes the file and its sidecar, then the folders the resolver made for it if they are left empty. */
export function removeCachedModel(modelsDir: string, model: CachedModel): void {
  fs.rmSync(model.path, {force: true});
  fs.rmSync(checksumSidecarPath(model.path), {force: true});
  const root = path.resolve(modelsDir);
  let dir = path.dirname(model.path);
  while (dir.startsWith(`${root}${path.sep}`) && fs.readdirSync(dir).length === 0) {
    fs.rmdirSync(dir);
    dir = path.dirname(dir);
  }
}
