/**
 * `hf:` references: one file of a Hugging Face repository, downloaded once into the model cache
 * and reused from there without touching the network, checked against its checksum sidecar on
 * every use (see cache-checksum.ts).
 */
import fs from 'node:fs/promises';
import path from 'node:path';
import {hfEndpoint} from '../config/env.js';
import {downloadFile} from './download.js';
import {withFileLock} from './file-lock.js';
import {readCacheChecksum, verifyCachedFile, writeCacheChecksum, type VerifyDepth} from './cache-checksum.js';
import type {HfModelRef} from './model-ref.js';
import type {ModelProgress} from './resolve-model.js';

export type HfModelOptions = {
  ref: HfModelRef;
  modelsDir: string;
  env?: NodeJS.ProcessEnv;
  onProgress?: (progress: ModelProgress) => void;
  signal?: AbortSignal;
  /** How a cached copy is checked: `quick` (size, and the hash when the size or mtime moved) or `full` (always hashed). */
  verify?: VerifyDepth;
  /** Download again even when a cached copy is there (it is replaced only once the new one is verified). */
  force?: boolean;
};

export function hfModelUrl(ref: HfModelRef, env: NodeJS.ProcessEnv = process.env): string {
  const file = ref.file.split('/').map(encodeURIComponent).join('/');
  return `${hfEndpoint(env)}/${ref.repo}/resolve/${encodeURIComponent(ref.revision)}/${file}`;
}

export function hfModelCachePath(ref: HfModelRef, modelsDir: string): string {
  const [org = '', repo = ''] = ref.repo.split('/');
  // A revision such as `refs/pr/1` must stay one folder level.
  return path.join(modelsDir, 'hf', org, repo, encodeURIComponent(ref.revision), ...ref.file.split('/'));
}

/** Returns the path of the cached file, downloading it first when it is not there yet (or `force`). */
export async function resolveHfModel(options: HfModelOptions): Promise<string> {
  const destination = hfModelCachePath(options.ref, options.modelsDir);
  if (!options.force && (await verifiedCopy(destination, options))) {
    return destination;
  }
  await fs.mkdir(path.dirname(destination), {recursive: true, mode: 0o700});
  // Two processes resolving the same reference would otherwise append to the same `.part` file.
  const lock = {path: `${destination}.lock`, ...(options.signal === undefined ? {} : {signal: options.signal})};
  return withFileLock(lock, async () => {
    if (options.force || !(await verifiedCopy(destination, options))) {
      await downloadFile({
        url: hfModelUrl(options.ref, options.env),
        destination,
        ...(options.ref.sha256 === undefined ? {} : {expectedSha256: options.ref.sha256}),
        ...(options.onProgress === undefined ? {} : {onProgress: options.onProgress}),
        ...(options.signal === undefined ? {} : {signal: options.signal}),
        // The sidecar is written before the file takes its name: a cached file always has one.
        beforeRename: async verified => {
          const {mtimeMs} = await fs.stat(verified.partPath);
          await writeCacheChecksum(destination, {
            sha256: verified.sha256,
            size: verified.size,
            mtime_ms: mtimeMs,
            source: verified.checkedAgainst === null ? 'computed' : 'hub',
          });
        },
      });
    }
    return destination;
  });
}

/** The `rbee model pull --force` that fetches `ref` again, for error messages. */
export function hfPullCommand(ref: HfModelRef): string {
  const revision = ref.revision === 'main' ? '' : `@${ref.revision}`;
  return `rbee model pull --force hf:${ref.repo}${revision}:${ref.file}${ref.sha256 === undefined ? '' : `#sha256=${ref.sha256}`}`;
}

/**
 * Whether a verified copy is cached. A file without a sidecar predates checksums (or a crash left
 * it): it is fetched again. A file that no longer matches its sidecar throws `damaged_cache_entry`.
 */
async function verifiedCopy(destination: string, options: HfModelOptions): Promise<boolean> {
  if (!(await isFile(destination))) {
    return false;
  }
  const sidecar = await readCacheChecksum(destination);
  if (sidecar === null) {
    return false;
  }
  await verifyCachedFile({
    file: destination,
    sidecar,
    depth: options.verify ?? 'quick',
    pullCommand: hfPullCommand(options.ref),
    expectedSha256: options.ref.sha256,
  });
  return true;
}

async function isFile(file: string): Promise<boolean> {
  try {
    return (await fs.stat(file)).isFile();
  } catch {
    return false;
  }
}
