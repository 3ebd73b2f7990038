/**
 * llama.cpp's teacher-forcing reference (llamaCppTeacherReference) kept on disk, so a machine
 * computes it once per llama.cpp build, model and prompt set rather than in every test run: it is
 * most of what the correctness tests cost (40 s of llama.cpp for the 300-token prompt alone on two
 * cores, a minute and more while other tests run).
 *
 * The key holds everything the answer depends on: the model file's sha256, node-llama-cpp's
 * version, the CPU build llama.cpp loads here (each build's float arithmetic differs, see
 * agreement-suite.ts), the prompts, the token count and the top-k kept. A record that does not
 * parse or does not match its key is computed again; the answer says where it came from.
 */
import {createHash} from 'node:crypto';
import fs from 'node:fs';
import {createRequire} from 'node:module';
import os from 'node:os';
import path from 'node:path';
import {z} from 'zod';
import {writePrivateFileAtomically} from '../../src/config/private-home.js';
import {hashFile} from '../../src/models/download.js';
import {llamaCppTeacherReference, referenceLlama, type TeacherReference} from './llama-cpp-reference.js';

const recordSchema = z.strictObject({
  key: z.string(),
  recordedAt: z.string(),
  cpuVariant: z.string(),
  references: z.array(
    z.strictObject({
      prompt: z.string(),
      promptTokens: z.array(z.number().int()),
      tokens: z.array(z.number().int()),
      distributions: z.array(z.array(z.strictObject({token: z.number().int(), probability: z.number()}))),
    }),
  ),
});

export type CachedTeacherReference = TeacherReference[] & {cpuVariant: string; source: string};

const fileHashes = new Map<string, string>();

/** The model file's sha256 (src/models/download.ts's hashFile), once per file version in this process. */
async function sha256OfFile(file: string): Promise<string> {
  const stat = fs.statSync(file);
  const memo = `${file}:${stat.size}:${stat.mtimeMs}`;
  let hash = fileHashes.get(memo);
  if (hash === undefined) {
    hash = await hashFile(file);
    fileHashes.set(memo, hash);
  }
  return hash;
}

/** node-llama-cpp's version, from the package.json above its entry point (the package exports no ./package.json). */
function nodeLlamaCppVersion(): string {
  let dir = path.dirname(createRequire(import.meta.url).resolve('node-llama-cpp'));
  for (; dir !== path.dirname(dir); dir = path.dirname(dir)) {
    const manifest = path.join(dir, 'package.json');
    if (fs.existsSync(manifest)) {
      const {name, version} = JSON.parse(fs.readFileSync(manifest, 'utf8')) as {name?: string; version?: string};
      if (name === 'node-llama-cpp' && version) return version;
    }
  }
  throw new Error('node-llama-cpp: no package.json above its entry point');
}

export function defaultReferenceCacheDir(): string {
  return path.join(os.homedir(), '.cache', 'rbee', 'llama-references');
}

/** llamaCppTeacherReference(modelPath, prompts, maxTokens, options), from `dir` when recorded there. */
export async function cachedTeacherReference(
  modelPath: string,
  prompts: readonly string[],
  maxTokens: number,
  options: {cpuVariant?: string; top?: number; dir?: string} = {},
): Promise<CachedTeacherReference> {
  const {llama, cpuVariant} = await referenceLlama(options.cpuVariant === undefined ? {} : {cpuVariant: options.cpuVariant});
  await llama.dispose();
  const top = options.top ?? 8;
  const key = JSON.stringify({
    model: await sha256OfFile(modelPath),
    nodeLlamaCpp: nodeLlamaCppVersion(),
    cpuVariant,
    prompts,
    maxTokens,
    top,
    threads: 2,
    contextSize: 2048,
  });
  const dir = options.dir ?? defaultReferenceCacheDir();
  const file = path.join(dir, `${createHash('sha256').update(key).digest('hex').slice(0, 32)}.json`);
  try {
    const record = recordSchema.parse(JSON.parse(fs.readFileSync(file, 'utf8')));
    if (record.key === key && record.cpuVariant === cpuVariant) {
      return Object.assign(record.references, {cpuVariant, source: `recorded ${record.recordedAt} (${file})`});
    }
  } catch {
    // Not recorded yet, or damaged: computed again below.
  }
  const references = await llamaCppTeacherReference(modelPath, prompts, maxTokens, {
    ...(options.cpuVariant === undefined ? {} : {cpuVariant: options.cpuVariant}),
    top,
  });
  const record = {key, recordedAt: new Date().toISOString(), cpuVariant: references.cpuVariant, references: [...references]};
  writePrivateFileAtomically(file, `${JSON.stringify(record)}\n`);
  return Object.assign([...references], {cpuVariant: references.cpuVariant, source: 'computed now'});
}
