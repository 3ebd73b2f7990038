/**
 * Builds llama.cpp's own programs (llama-server, ggml-rpc-server, llama-bench, llama-quantize) from
 * the source node-llama-cpp ships as a git bundle, so users and CI get a real llama-server from
 * the npm registry alone. Nothing is downloaded at build time; the result is cached by version.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import {createRequire} from 'node:module';
import {RbeeError} from '../errors.js';
import {runBuildStep} from './build-step.js';

export const llamaCppPrograms = ['llama-server', 'ggml-rpc-server', 'llama-bench', 'llama-quantize'] as const;
/** Bump when the cmake flags change, so cached builds of the old recipe are not reused. */
const buildRecipe = 2;
export type LlamaCppProgram = (typeof llamaCppPrograms)[number];

export type LlamaCppInstall = {version: string; binDir: string; programs: Record<LlamaCppProgram, string>};

export type BuildProgress = {phase: 'clone' | 'configure' | 'build' | 'done'; done: number; total: number | null};

function nodeLlamaCppDir(): string {
  const require = createRequire(import.meta.url);
  // The package's exports hide package.json; its main entry lies in dist/, one level below the root.
  return path.resolve(path.dirname(require.resolve('node-llama-cpp')), '..');
}

/** node-llama-cpp's version and the llama.cpp release it bundles: the cache key. */
export function bundledLlamaCppVersion(): {nodeLlamaCpp: string; llamaCpp: string; bundle: string} {
  const root = nodeLlamaCppDir();
  const pkg = JSON.parse(fs.readFileSync(path.join(root, 'package.json'), 'utf8')) as {version: string};
  const info = JSON.parse(fs.readFileSync(path.join(root, 'llama', 'llama.cpp.info.json'), 'utf8')) as {tag: string};
  return {nodeLlamaCpp: pkg.version, llamaCpp: info.tag, bundle: path.join(root, 'llama', 'gitRelease.bundle')};
}

/**
 * Checks out the llama.cpp source node-llama-cpp ships as a git bundle into `dest` (which must not
 * exist). Other engine builds use it too: Ollama's Go module leaves out llama.cpp's vendor/ headers.
 */
export async function checkoutBundledLlamaCpp(dest: string, options: {env?: NodeJS.ProcessEnv; log?: (line: string) => void} = {}): Promise<void> {
  await runBuildStep('git', ['clone', '--quiet', bundledLlamaCppVersion().bundle, dest], {
    env: options.env ?? process.env,
    ...(options.log === undefined ? {} : {log: options.log}),
  });
}

export function llamaCppCacheDir(env: NodeJS.ProcessEnv = process.env): string {
  const base = env.RBEE_CACHE_DIR ?? path.join(os.homedir(), '.cache', 'rbee');
  const version = bundledLlamaCppVersion();
  // The build recipe's own version is part of the key: a changed recipe rebuilds instead of reusing.
  return path.join(base, 'llama.cpp', `${version.llamaCpp}-nlc${version.nodeLlamaCpp}-r${buildRecipe}-${process.platform}-${process.arch}`);
}

/**
 * CPU features to compile for. On x86-64 Linux they are read off /proc/cpuinfo instead of
 * -march=native, so that AMX stays off: virtual machines often advertise AMX without granting
 * its tile state, and llama.cpp's AMX kernels then crash (seen here: SIGSEGV in
 * ggml_backend_amx_mul_mat). Elsewhere (Apple silicon, ARM) native is right.
 */
function cpuFeatureFlags(): string[] {
  if (process.platform !== 'linux' || process.arch !== 'x64') {
    return ['-DGGML_NATIVE=ON'];
  }
  let flags = '';
  try {
    flags = /^flags\s*:(.*)$/m.exec(fs.readFileSync('/proc/cpuinfo', 'utf8'))?.[1] ?? '';
  } catch {
    return ['-DGGML_NATIVE=OFF'];
  }
  const has = (flag: string) => flags.split(/\s+/).includes(flag);
  const feature = (name: string, present: boolean) => `-DGGML_${name}=${present ? 'ON' : 'OFF'}`;
  const avx512 = has('avx512f') && has('avx512bw') && has('avx512vl') && has('avx512dq') && has('avx512cd');
  return [
    '-DGGML_NATIVE=OFF',
    feature('SSE42', has('sse4_2')),
    feature('AVX', has('avx')),
    feature('AVX2', has('avx2')),
    feature('BMI2', has('bmi2')),
    feature('FMA', has('fma')),
    feature('F16C', has('f16c')),
    feature('AVX_VNNI', has('avx_vnni')),
    feature('AVX512', avx512),
    feature('AVX512_VBMI', avx512 && has('avx512_vbmi')),
    feature('AVX512_VNNI', avx512 && has('avx512_vnni')),
    feature('AVX512_BF16', avx512 && has('avx512_bf16')),
    '-DGGML_AMX_TILE=OFF',
    '-DGGML_AMX_INT8=OFF',
    '-DGGML_AMX_BF16=OFF',
  ];
}

function installAt(dir: string): LlamaCppInstall | null {
  const binDir = path.join(dir, 'bin');
  const programs = Object.fromEntries(llamaCppPrograms.map(name => [name, path.join(binDir, name)])) as Record<LlamaCppProgram, string>;
  const complete = fs.existsSync(path.join(dir, 'complete')) && Object.values(programs).every(file => fs.existsSync(file));
  return complete ? {version: path.basename(dir), binDir, programs} : null;
}

/** The cached build, if one is complete. */
export function findLlamaCpp(env: NodeJS.ProcessEnv = process.env): LlamaCppInstall | null {
  return installAt(llamaCppCacheDir(env));
}

export async function installLlamaCpp(
  options: {env?: NodeJS.ProcessEnv; jobs?: number; onProgress?: (progress: BuildProgress) => void; log?: (line: string) => void} = {},
): Promise<LlamaCppInstall> {
  const env = options.env ?? process.env;
  const target = llamaCppCacheDir(env);
  const existing = installAt(target);
  if (existing !== null) {
    return existing;
  }
  const version = bundledLlamaCppVersion();
  fs.mkdirSync(path.dirname(target), {recursive: true});
  const work = fs.mkdtempSync(path.join(path.dirname(target), `.build-${path.basename(target)}-`));
  const source = path.join(work, 'src');
  const build = path.join(work, 'build');
  const log = options.log ?? (() => undefined);
  const run = (command: string, args: string[], onLine?: (line: string) => void) =>
    runBuildStep(command, args, {env, log, ...(onLine === undefined ? {} : {onLine})});
  try {
    options.onProgress?.({phase: 'clone', done: 0, total: null});
    await checkoutBundledLlamaCpp(source, {env, log});
    options.onProgress?.({phase: 'configure', done: 0, total: null});
    // Loaded only when a build runs: execa takes ~150 ms to import, and this module is on every worker's start path (the public index).
    const {execa} = await import('execa');
    const ninja = (await execa('ninja', ['--version'], {reject: false})).exitCode === 0;
    await run('cmake', [
      '-S',
      source,
      '-B',
      build,
      ...(ninja ? ['-G', 'Ninja'] : []),
      '-DCMAKE_BUILD_TYPE=Release',
      // Nothing may download at build time: no prebuilt web UI, no HTTPS client.
      '-DLLAMA_USE_PREBUILT_UI=OFF',
      '-DLLAMA_OPENSSL=OFF',
      '-DLLAMA_CURL=OFF',
      '-DLLAMA_BUILD_SERVER=ON',
      '-DLLAMA_BUILD_TOOLS=ON',
      '-DLLAMA_BUILD_TESTS=OFF',
      '-DLLAMA_BUILD_EXAMPLES=OFF',
      '-DGGML_RPC=ON',
      '-DBUILD_SHARED_LIBS=OFF',
      ...cpuFeatureFlags(),
    ]);
    const jobs = options.jobs ?? Math.max(1, os.availableParallelism());
    await run('cmake', ['--build', build, '--parallel', String(jobs), '--target', ...llamaCppPrograms], line => {
      // Ninja prints "[12/343]", make prints "[ 45%]".
      const step = /^\[(\d+)\/(\d+)\]/.exec(line);
      const percent = /^\[\s*(\d+)%\]/.exec(line);
      if (step !== null) {
        options.onProgress?.({phase: 'build', done: Number(step[1]), total: Number(step[2])});
      } else if (percent !== null) {
        options.onProgress?.({phase: 'build', done: Number(percent[1]), total: 100});
      }
    });
    const staging = `${target}.staging-${process.pid}`;
    fs.rmSync(staging, {recursive: true, force: true});
    fs.mkdirSync(path.join(staging, 'bin'), {recursive: true});
    for (const program of llamaCppPrograms) {
      fs.copyFileSync(path.join(build, 'bin', program), path.join(staging, 'bin', program));
      fs.chmodSync(path.join(staging, 'bin', program), 0o755);
    }
    fs.writeFileSync(path.join(staging, 'complete'), `${JSON.stringify(version)}\n`);
    fs.rmSync(target, {recursive: true, force: true});
    fs.renameSync(staging, target);
    options.onProgress?.({phase: 'done', done: 1, total: 1});
    const installed = installAt(target);
    if (installed === null) {
      throw new RbeeError('engine_error', `llama.cpp build finished but ${target} is incomplete`);
    }
    return installed;
  } finally {
    fs.rmSync(work, {recursive: true, force: true});
  }
}
