/**
 * Builds the real `ollama` binary from its Go module (`go install github.com/ollama/ollama@<version>`),
 * with its CPU llama.cpp compiled in through cgo, so users and CI get Ollama from the Go module proxy
 * alone. The module zip leaves out llama.cpp's vendor/ headers (nlohmann, miniaudio, stb, ...); they
 * come from the llama.cpp source node-llama-cpp ships. The binary is cached by version; Go's module
 * and build caches live beside it so a rebuild (or CI on a warm cache) takes minutes, not tens.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import {RbeeError} from '../errors.js';
import {runBuildStep} from './build-step.js';
import {bundledLlamaCppVersion, checkoutBundledLlamaCpp} from './llama-cpp-build.js';

export const ollamaVersion = '0.17.4';
export const ollamaModule = 'github.com/ollama/ollama';

export type OllamaInstall = {version: string; binary: string; dir: string};
export type OllamaBuildProgress = {phase: 'headers' | 'build' | 'done'; done: number; total: number | null; detail?: string};

function cacheBase(env: NodeJS.ProcessEnv): string {
  return env.RBEE_CACHE_DIR ?? path.join(os.homedir(), '.cache', 'rbee');
}

export function ollamaCacheDir(env: NodeJS.ProcessEnv = process.env, version = ollamaVersion): string {
  const arch = process.arch === 'x64' ? 'x64' : process.arch;
  return path.join(cacheBase(env), 'ollama', `${version}-${process.platform}-${arch}`);
}

function installAt(dir: string): OllamaInstall | null {
  const binary = path.join(dir, 'bin', 'ollama');
  const complete = fs.existsSync(path.join(dir, 'complete')) && fs.existsSync(binary);
  return complete ? {version: path.basename(dir), binary, dir} : null;
}

/** The cached build, if one is complete. */
export function findOllama(env: NodeJS.ProcessEnv = process.env): OllamaInstall | null {
  return installAt(ollamaCacheDir(env));
}

/**
 * llama.cpp's vendor/ headers at a path that never changes for one llama.cpp release: Go keys its
 * build cache on CGO_CPPFLAGS, so a fresh temporary path would make every build a cold one.
 */
async function vendorHeaders(env: NodeJS.ProcessEnv, log: (line: string) => void): Promise<string> {
  const dir = path.join(cacheBase(env), 'ollama', `llama.cpp-${bundledLlamaCppVersion().llamaCpp}-vendor`);
  if (fs.existsSync(path.join(dir, 'complete'))) {
    return path.join(dir, 'vendor');
  }
  fs.mkdirSync(path.dirname(dir), {recursive: true});
  const work = fs.mkdtempSync(`${dir}.checkout-`);
  try {
    await checkoutBundledLlamaCpp(path.join(work, 'src'), {env, log});
    const staging = path.join(work, 'staging');
    fs.mkdirSync(staging);
    fs.renameSync(path.join(work, 'src', 'vendor'), path.join(staging, 'vendor'));
    fs.writeFileSync(path.join(staging, 'complete'), `${JSON.stringify(bundledLlamaCppVersion())}\n`);
    fs.rmSync(dir, {recursive: true, force: true});
    fs.renameSync(staging, dir);
  } finally {
    fs.rmSync(work, {recursive: true, force: true});
  }
  return path.join(dir, 'vendor');
}

/** The environment `go install` runs in: its caches under rbee's cache, cgo on, headers found. */
export function goBuildEnv(env: NodeJS.ProcessEnv, vendorDir: string, gobin: string): NodeJS.ProcessEnv {
  const go = path.join(cacheBase(env), 'go');
  return {
    ...env,
    GOPATH: go,
    GOMODCACHE: path.join(go, 'pkg', 'mod'),
    GOCACHE: path.join(go, 'build-cache'),
    GOBIN: gobin,
    GOFLAGS: '-mod=mod',
    CGO_ENABLED: '1',
    CGO_CPPFLAGS: `-I${vendorDir}`,
    // A newer toolchain, if the module asks for one, comes from the Go proxy like the module itself.
    GOTOOLCHAIN: env.GOTOOLCHAIN ?? 'auto',
  };
}

export async function installOllama(
  options: {env?: NodeJS.ProcessEnv; onProgress?: (progress: OllamaBuildProgress) => void; log?: (line: string) => void} = {},
): Promise<OllamaInstall> {
  const env = options.env ?? process.env;
  const target = ollamaCacheDir(env);
  const existing = installAt(target);
  if (existing !== null) {
    return existing;
  }
  const log = options.log ?? (() => undefined);
  // Loaded only when a build runs: execa takes ~150 ms to import, and this module is on every worker's start path (the public index).
  const {execa} = await import('execa');
  const go = await execa('go', ['version'], {reject: false, env});
  if (go.exitCode !== 0) {
    throw new RbeeError(
      'engine_error',
      'ollama is built with Go (`go install`), and there is no working `go` on PATH: install Go (go.dev/dl), then run `rbee engines install ollama` again',
      {cause: go},
    );
  }
  options.onProgress?.({phase: 'headers', done: 0, total: null});
  const vendorDir = await vendorHeaders(env, log);
  fs.mkdirSync(path.dirname(target), {recursive: true});
  const work = fs.mkdtempSync(path.join(path.dirname(target), `.build-${path.basename(target)}-`));
  try {
    const gobin = path.join(work, 'bin');
    let packages = 0;
    options.onProgress?.({phase: 'build', done: 0, total: null});
    // -v names each package as it is compiled: the only progress signal `go install` gives.
    await runBuildStep('go', ['install', '-v', `${ollamaModule}@v${ollamaVersion}`], {
      env: goBuildEnv(env, vendorDir, gobin),
      cwd: work,
      log,
      onLine: line => {
        if (/^[\w.-]+(\/[\w.@-]+)*$/.test(line.trim())) {
          packages += 1;
          options.onProgress?.({phase: 'build', done: packages, total: null, detail: line.trim()});
        }
      },
    });
    const staging = path.join(work, 'staging');
    fs.mkdirSync(path.join(staging, 'bin'), {recursive: true});
    fs.renameSync(path.join(gobin, 'ollama'), path.join(staging, 'bin', 'ollama'));
    fs.chmodSync(path.join(staging, 'bin', 'ollama'), 0o755);
    fs.writeFileSync(path.join(staging, 'complete'), `${JSON.stringify({ollama: ollamaVersion, llamaCppHeaders: bundledLlamaCppVersion().llamaCpp})}\n`);
    fs.rmSync(target, {recursive: true, force: true});
    fs.renameSync(staging, target);
    options.onProgress?.({phase: 'done', done: packages, total: packages});
    const installed = installAt(target);
    if (installed === null) {
      throw new RbeeError('engine_error', `ollama build finished but ${target} is incomplete`);
    }
    return installed;
  } finally {
    fs.rmSync(work, {recursive: true, force: true});
  }
}
