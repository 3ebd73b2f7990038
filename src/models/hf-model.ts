/**
 * `hf:` references: one file of a Hugging Face repository, downloaded once into the model cache
 * and reused from there without touching the network.
 */
import fs from 'node:fs/promises';
import path from 'node:path';
import {hfEndpoint} from '../config/env.js';
import {downloadFile} from './download.js';
import {withFileLock} from './file-lock.js';
import type {HfModelRef} from './model-ref.js';
import type {ModelProgress} from './resolve-model.js';

export type HfModelOptions = {
  ref: HfModelRef;
  modelsDir: string;
  env?: NodeJS.ProcessEnv;
  onProgress?: (progress: ModelProgress) => void;
  signal?: AbortSignal;
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

/** Returns the path of the cached file, downloading it first when it is not there yet. */
export async function resolveHfModel(options: HfModelOptions): Promise<string> {
  const destination = hfModelCachePath(options.ref, options.modelsDir);
  if (await isFile(destination)) {
    return destination;
  }
  await fs.mkdir(path.dirname(destination), {recursive: true});
  // Two processes resolving the same reference would otherwise append to the same `.part` file.
  const lock = {path: `${destination}.lock`, ...(options.signal === undefined ? {} : {signal: options.signal})};
  return withFileLock(lock, async () => {
    if (!(await isFile(destination))) {
      await downloadFile({
        url: hfModelUrl(options.ref, options.env),
        destination,
        ...(options.ref.sha256 === undefined ? {} : {expectedSha256: options.ref.sha256}),
        ...(options.onProgress === undefined ? {} : {onProgress: options.onProgress}),
        ...(options.signal === undefined ? {} : {signal: options.signal}),
      });
    }
    return destination;
  });
}

async function isFile(file: string): Promise<boolean> {
  try {
    return (await fs.stat(file)).isFile();
  } catch {
    return false;
  }
}
