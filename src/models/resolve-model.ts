/**
 * Turns whatever model reference a user gave into a local GGUF file that an engine can load,
 * downloading it first when needed.
 */
import fs from 'node:fs/promises';
import path from 'node:path';
import {RbeeError} from '../errors.js';
import {defaultModelPath, resolveDefaultModel} from './default-model.js';
import type {VerifyDepth} from './cache-checksum.js';
import {resolveHfModel} from './hf-model.js';
import {modelNameFromFile, parseModelRef, type ModelRef} from './model-ref.js';

export type ModelProgress = {phase: 'downloading' | 'assembling' | 'verifying'; done: number; total: number | null};

/** `path` is empty for an engine's own model (`engine:<name>`): there is no file. */
export type ResolvedModel = {ref: string; kind: 'default' | 'path' | 'hf' | 'engine'; path: string; name: string};

/** What the engine loads: one GGUF file (llama.cpp), a model folder (vLLM, TensorRT-LLM), or either. */
export type ModelFormat = 'gguf' | 'directory' | 'any';

export type ResolveModelOptions = {
  modelsDir: string;
  /** Default: 'gguf'. */
  format?: ModelFormat;
  env?: NodeJS.ProcessEnv;
  onProgress?: (progress: ModelProgress) => void;
  signal?: AbortSignal;
  /** How a cached download is checked before use: `quick` (the default) or `full` (hashed, as `model pull` does). */
  verify?: VerifyDepth;
  /** Fetch a downloaded model again even if a cached copy is there (`model pull --force`). */
  force?: boolean;
};

const ggufMagic = Buffer.from('GGUF', 'latin1');

export async function resolveModel(ref: string, options: ResolveModelOptions): Promise<ResolvedModel> {
  const parsed = parseModelRef(ref);
  const shared = {
    modelsDir: options.modelsDir,
    ...(options.env === undefined ? {} : {env: options.env}),
    ...(options.onProgress === undefined ? {} : {onProgress: options.onProgress}),
    ...(options.signal === undefined ? {} : {signal: options.signal}),
  };
  let file: string;
  switch (parsed.kind) {
    case 'default':
      if (options.force === true) {
        // Assembled again from its parts (verified against the pinned sha256) once this copy is gone.
        await fs.rm(defaultModelPath(options.modelsDir), {force: true});
      }
      file = await resolveDefaultModel(shared);
      break;
    case 'hf':
      file = await resolveHfModel({
        ...shared,
        ref: parsed,
        ...(options.verify === undefined ? {} : {verify: options.verify}),
        ...(options.force === undefined ? {} : {force: options.force}),
      });
      break;
    case 'path':
      file = parsed.path;
      break;
    case 'engine':
      throw new RbeeError(
        'invalid_request',
        `${ref} names a model in an engine's own store, not a file rbee can open: only a worker type whose engine keeps such a store takes it (rbee worker spawn --type ollama --model ${ref} …)`,
      );
  }
  const format = options.format ?? 'gguf';
  if (format !== 'gguf' && parsed.kind === 'path' && (await isDirectory(file))) {
    return {ref, kind: parsed.kind, path: file, name: path.basename(file)};
  }
  if (format === 'directory') {
    throw new RbeeError('model_not_found', `model folder not found: ${file} (this worker type loads a model folder)`);
  }
  // Downloads are checked too: a proxy's HTML error page saved as a model is better caught here
  // than as an obscure engine failure.
  await assertGgufFile(file);
  return {ref, kind: parsed.kind, path: file, name: modelNameFromFile(file)};
}

async function isDirectory(file: string): Promise<boolean> {
  try {
    return (await fs.stat(file)).isDirectory();
  } catch {
    return false;
  }
}

async function assertGgufFile(file: string): Promise<void> {
  let handle: fs.FileHandle;
  try {
    const stats = await fs.stat(file);
    if (!stats.isFile()) {
      throw new RbeeError('model_not_found', `model file not found: ${file} (it is not a regular file)`);
    }
    handle = await fs.open(file, 'r');
  } catch (error) {
    if (error instanceof RbeeError) {
      throw error;
    }
    throw new RbeeError('model_not_found', `model file not found: ${file}`, {cause: error});
  }
  let header: Buffer;
  let bytesRead: number;
  try {
    header = Buffer.alloc(24);
    ({bytesRead} = await handle.read(header, 0, header.length, 0));
  } catch (error) {
    throw new RbeeError('invalid_request', `cannot read model file ${file}: ${(error as Error).message}`, {cause: error});
  } finally {
    await handle.close();
  }
  if (bytesRead < ggufMagic.length || !header.subarray(0, ggufMagic.length).equals(ggufMagic)) {
    throw new RbeeError('invalid_request', `${file} is not a GGUF file (it does not start with the GGUF magic bytes)`);
  }
  checkGgufHeader(file, header, bytesRead);
}

/**
 * The fixed GGUF header (magic, version, tensor count, metadata count), checked before any
 * parser sees the file: a truncated or garbage file must fail here in microseconds, not make a
 * GGUF reader chase bogus lengths through gigabytes.
 */
function checkGgufHeader(file: string, header: Buffer, bytesRead: number): void {
  if (bytesRead < 24) {
    throw new RbeeError('invalid_request', `${file} is not a valid GGUF file: ${bytesRead} bytes is shorter than the GGUF header`);
  }
  const version = header.readUInt32LE(4);
  const tensors = header.readBigUInt64LE(8);
  const entries = header.readBigUInt64LE(16);
  if (version < 2 || version > 3) {
    throw new RbeeError('invalid_request', `${file} is not a valid GGUF file: unsupported GGUF version ${version}`);
  }
  if (tensors === 0n || tensors > 1_000_000n || entries === 0n || entries > 100_000n) {
    throw new RbeeError('invalid_request', `${file} is not a valid GGUF file: implausible header (${tensors} tensors, ${entries} metadata entries)`);
  }
}

/** A short human description, for logs and progress labels; never throws. */
export function describeModelRef(ref: string | ModelRef): string {
  let parsed: ModelRef;
  try {
    parsed = typeof ref === 'string' ? parseModelRef(ref) : ref;
  } catch {
    return String(ref);
  }
  switch (parsed.kind) {
    case 'default':
      return 'default model (Gemma 3 270M Q4_K_M)';
    case 'hf':
      return `${parsed.file} from Hugging Face ${parsed.repo}${parsed.revision === 'main' ? '' : `@${parsed.revision}`}`;
    case 'path':
      return `local file ${parsed.path}`;
    case 'engine':
      return `${parsed.name} from the engine's own store`;
  }
}
