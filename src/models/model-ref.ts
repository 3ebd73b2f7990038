/**
 * Model references as users type them: `default`, `hf:org/repo[@revision]:path/file.gguf[#sha256=…]`,
 * `engine:<name>` (a model the engine keeps in a store of its own, Ollama's, by that name: no file
 * for rbee to open), or a local path. Parsing is strict for `hf:` because the parts end up in a URL and in a cache
 * path on disk: a sloppy reference must fail here, with a message that says what is wrong,
 * rather than as a confusing 404 or a file written outside the cache.
 */
import path from 'node:path';
import {RbeeError} from '../errors.js';

export type DefaultModelRef = {kind: 'default'};
export type PathModelRef = {kind: 'path'; path: string};
export type HfModelRef = {kind: 'hf'; repo: string; file: string; revision: string; sha256?: string};
export type EngineModelRef = {kind: 'engine'; name: string};
export type ModelRef = DefaultModelRef | PathModelRef | HfModelRef | EngineModelRef;

// Ollama's names: `model`, `model:tag`, `namespace/model:tag`, `host/namespace/model:tag`.
const engineNamePattern = /^[A-Za-z0-9][A-Za-z0-9._:/-]{0,199}$/;

const hfSyntax = 'hf:<org>/<repo>[@revision]:<path/to/file>.gguf[#sha256=<64 hex>]';
// Hugging Face repository and file names; anything else would need escaping we'd rather not guess.
const namePattern = /^[A-Za-z0-9][A-Za-z0-9._-]*$/;
const fileSegmentPattern = /^[A-Za-z0-9_][A-Za-z0-9._+-]*$/;
// Branches, tags and commit hashes; `/` allowed for refs such as `refs/pr/1`.
const revisionPattern = /^[A-Za-z0-9][A-Za-z0-9._/-]*$/;
const sha256Pattern = /^[0-9a-f]{64}$/i;

export function parseModelRef(ref: string): ModelRef {
  const trimmed = ref.trim();
  if (trimmed === '') {
    throw new RbeeError('invalid_request', 'model reference is empty (use "default", an hf: reference or a path)');
  }
  if (trimmed === 'default') {
    return {kind: 'default'};
  }
  if (trimmed.startsWith('hf:')) {
    return parseHfRef(trimmed);
  }
  if (trimmed.startsWith('engine:')) {
    const name = trimmed.slice('engine:'.length);
    if (!engineNamePattern.test(name) || name.split('/').some(segment => segment === '' || segment === '..' || segment === '.')) {
      throw new RbeeError(
        'invalid_request',
        `invalid model reference "${ref}": expected engine:<name>, a name of letters, digits, ".", "_", ":", "-" and "/" (up to 200)`,
      );
    }
    return {kind: 'engine', name};
  }
  return {kind: 'path', path: path.resolve(trimmed)};
}

function parseHfRef(ref: string): HfModelRef {
  const reject = (problem: string): never => {
    throw new RbeeError('invalid_request', `invalid model reference "${ref}": ${problem} (expected ${hfSyntax})`);
  };

  let body = ref.slice('hf:'.length);
  let sha256: string | undefined;
  const hashAt = body.indexOf('#');
  if (hashAt !== -1) {
    const fragment = body.slice(hashAt + 1);
    body = body.slice(0, hashAt);
    const match = /^sha256=(.*)$/.exec(fragment);
    if (!match) {
      reject(`unknown suffix "#${fragment}" (only #sha256=<64 hex> is supported)`);
    }
    const digest = match?.[1] ?? '';
    if (!sha256Pattern.test(digest)) {
      reject(`sha256 must be 64 hex characters, got "${digest}"`);
    }
    sha256 = digest.toLowerCase();
  }

  const colonAt = body.indexOf(':');
  const repoPart = colonAt === -1 ? body : body.slice(0, colonAt);
  const file = colonAt === -1 ? '' : body.slice(colonAt + 1);

  const atAt = repoPart.indexOf('@');
  const repo = atAt === -1 ? repoPart : repoPart.slice(0, atAt);
  const revision = atAt === -1 ? 'main' : repoPart.slice(atAt + 1);

  const repoNames = repo.split('/');
  if (repo === '' || repoNames.length !== 2) {
    reject(`repository "${repo}" must be <org>/<repo>`);
  }
  for (const name of repoNames) {
    if (name === '..' || name.includes('..')) {
      reject(`repository "${repo}" must not contain ".."`);
    }
    if (!namePattern.test(name)) {
      reject(`repository "${repo}" has an empty part or characters other than letters, digits, ".", "_" and "-"`);
    }
  }

  if (revision === '') {
    reject('revision after "@" is empty');
  }
  if (!revisionPattern.test(revision) || revision.split('/').some(segment => segment === '' || segment === '..')) {
    reject(`revision "${revision}" has characters other than letters, digits, ".", "_", "-" and "/", or a ".." segment`);
  }

  if (file === '') {
    reject('missing the file after the repository');
  }
  for (const segment of file.split('/')) {
    if (segment === '..' || segment === '.') {
      reject(`file "${file}" must not contain "${segment}" segments`);
    }
    if (segment === '') {
      reject(`file "${file}" has an empty path segment`);
    }
    if (!fileSegmentPattern.test(segment)) {
      reject(`file "${file}" has characters other than letters, digits, ".", "_", "+" and "-"`);
    }
  }
  if (!file.toLowerCase().endsWith('.gguf')) {
    reject(`file "${file}" is not a .gguf file`);
  }

  return sha256 === undefined ? {kind: 'hf', repo, file, revision} : {kind: 'hf', repo, file, revision, sha256};
}

/** File name without `.gguf`: how models are named in listings and in the API. */
export function modelNameFromFile(file: string): string {
  return path.basename(file).replace(/\.gguf$/i, '');
}
