/**
 * What a spawn must pass before a worker is recorded: a known type and device, a model file the
 * hive may open, and (unless forced) enough free memory for it.
 */
import path from 'node:path';
import {RbeeError} from '../errors.js';
import {parseModelRef} from '../models/model-ref.js';
import {resolveModel, type ModelFormat, type ModelProgress, type ResolvedModel} from '../models/resolve-model.js';
import type {DeviceInfo, SpawnPlan, SpawnWorkerRequest, SpawnWorkerRequestBody} from '../protocol/wire.js';
import {workerDefaults} from '../worker/worker-defaults.js';
import type {WorkerTypeSupport} from '../adapters/adapter-backends.js';
import {admit, freeMemory, type AdmissionVerdict} from './admission.js';
import {checkRunsOn, defaultWorkerType} from './default-worker-type.js';
import {checkModelPath} from './model-access.js';

export type SpawnCheckOptions = {
  /** Worker types the loaded adapters offer, with the model format each loads. */
  workerTypes: string[];
  /** The device backends each worker type's adapter declares, asked at each spawn (an adapter may probe its engine). */
  workerTypeSupport: (spawnOptions?: {type: string; adapterOptions: Record<string, unknown>}) => Promise<WorkerTypeSupport[]>;
  modelFormats: Record<string, ModelFormat>;
  /** The adapter option each worker type takes its engine program from (`engine` in a spawn), where it has one. */
  engineOptions: Record<string, string>;
  /** Worker types whose engine keeps models of its own, which `engine:<name>` may name. */
  engineModelTypes: string[];
  /** Builds the type's adapter with a spawn's `adapter_options`, so the adapter's own checks refuse a bad one (throws). */
  checkAdapterOptions?: (type: string, options: Record<string, unknown>) => Promise<void>;
  modelsDir: string;
  allowedModelDirs: string[] | null;
  devices: DeviceInfo[];
  defaults: {contextSize?: number | undefined; parallel?: number | undefined};
  env?: NodeJS.ProcessEnv;
  /** Free memory of a device now (default: /proc/meminfo, nvidia-smi); injected so admission is tested without a GPU. */
  memoryProbe?: (device: string) => Promise<number>;
};

export function checkTypeAndDevice(spec: Pick<SpawnWorkerRequestBody, 'type' | 'device'>, options: Pick<SpawnCheckOptions, 'workerTypes' | 'devices'>): void {
  if (spec.type !== undefined && !options.workerTypes.includes(spec.type)) {
    throw new RbeeError('invalid_request', `unknown worker type "${spec.type}": available types are ${options.workerTypes.join(', ')}`);
  }
  if (!options.devices.some(device => device.id === spec.device)) {
    throw new RbeeError('device_unknown', `unknown device "${spec.device}": this machine has ${options.devices.map(device => device.id).join(', ')}`);
  }
}

export async function checkAdapterOptions(
  spec: Pick<SpawnWorkerRequest, 'type' | 'adapter_options'>,
  options: Pick<SpawnCheckOptions, 'checkAdapterOptions'>,
): Promise<void> {
  if (spec.adapter_options === undefined || options.checkAdapterOptions === undefined) {
    return;
  }
  try {
    await options.checkAdapterOptions(spec.type, spec.adapter_options);
  } catch (error) {
    throw new RbeeError('invalid_request', `adapter_options: ${(error as Error).message}`, {cause: error});
  }
}

/**
 * The spawn's worker type: the one it names, if its adapter runs on the device here, else the
 * fastest the adapters declare for the device. Refused at once, as a 4xx naming the type, the
 * device and what the type does run on, rather than as a worker that fails (and restarts) at load.
 */
export async function chooseWorkerType(
  spec: Pick<SpawnWorkerRequestBody, 'type' | 'device' | 'adapter_options'>,
  options: Pick<SpawnCheckOptions, 'workerTypeSupport'>,
): Promise<string> {
  // A spawn's own adapter options (another engine program, say) may change where the type runs.
  const offers = await options.workerTypeSupport(
    spec.type === undefined || spec.adapter_options === undefined ? undefined : {type: spec.type, adapterOptions: spec.adapter_options},
  );
  if (spec.type === undefined) {
    return defaultWorkerType(spec.device, offers);
  }
  checkRunsOn(spec.type, spec.device, offers);
  return spec.type;
}

/**
 * A spawn's `engine` as the adapter option its type declares for it; the request comes back
 * without `engine`, so what is recorded and restarted is the plain adapter options.
 */
export function applyEngine<T extends Pick<SpawnWorkerRequestBody, 'type' | 'engine' | 'adapter_options'>>(
  request: T,
  options: Pick<SpawnCheckOptions, 'engineOptions'>,
): Omit<T, 'engine'> {
  const {engine, ...rest} = request;
  if (engine === undefined) {
    return rest;
  }
  if (request.type === undefined) {
    throw new RbeeError('invalid_request', 'engine: name the worker type it is the engine of (type, or --type)');
  }
  const option = options.engineOptions[request.type];
  if (option === undefined) {
    throw new RbeeError('invalid_request', `engine: worker type "${request.type}" runs no engine program of its own to choose`);
  }
  if (!path.isAbsolute(engine)) {
    throw new RbeeError('invalid_request', `engine: an absolute path, got "${engine}"`);
  }
  const given = request.adapter_options?.[option];
  if (given !== undefined && given !== engine) {
    throw new RbeeError('invalid_request', `engine: adapter_options.${option} already names another engine ("${String(given)}")`);
  }
  return {...rest, adapter_options: {...request.adapter_options, [option]: engine}};
}

/**
 * A spawn's `engine:<name>` model, for a type whose engine keeps models of its own: the name, no
 * file. Null for any other reference; a 400 for a type that loads files.
 */
export function engineModel(spec: Pick<SpawnWorkerRequest, 'model' | 'type'>, options: Pick<SpawnCheckOptions, 'engineModelTypes'>): ResolvedModel | null {
  const reference = parseModelRef(spec.model);
  if (reference.kind !== 'engine') {
    return null;
  }
  if (!options.engineModelTypes.includes(spec.type)) {
    const takers = options.engineModelTypes.length === 0 ? 'none is loaded' : `those that do: ${options.engineModelTypes.join(', ')}`;
    throw new RbeeError(
      'invalid_request',
      `model: worker type "${spec.type}" loads model files; ${spec.model} names a model in an engine's own store (${takers})`,
    );
  }
  return {ref: spec.model, kind: 'engine', path: '', name: reference.name};
}

/** Resolves (downloading if need be) and checks the model file against the allowed folders. */
export async function resolveAllowedModel(
  reference: string,
  type: string,
  options: SpawnCheckOptions,
  onProgress?: (progress: ModelProgress) => void,
): Promise<ResolvedModel> {
  const model = await resolveModel(reference, {
    modelsDir: options.modelsDir,
    format: options.modelFormats[type] ?? 'gguf',
    ...(options.env === undefined ? {} : {env: options.env}),
    ...(onProgress === undefined ? {} : {onProgress}),
  });
  const allowed = options.allowedModelDirs === null ? null : [...options.allowedModelDirs, options.modelsDir];
  return {...model, path: checkModelPath(model.path, allowed)};
}

function probe(options: SpawnCheckOptions): {probe?: (device: string) => Promise<number>} {
  return options.memoryProbe === undefined ? {} : {probe: options.memoryProbe};
}

function workerShape(spec: SpawnWorkerRequest, options: SpawnCheckOptions): {contextSize: number; parallel: number} {
  return {
    contextSize: spec.context_size ?? options.defaults.contextSize ?? workerDefaults.contextSize,
    parallel: spec.parallel ?? options.defaults.parallel ?? workerDefaults.parallel,
  };
}

/** The admission verdict; throws insufficient_memory when it does not fit and the spec does not force it. */
export async function admitOrThrow(spec: SpawnWorkerRequest, modelPath: string, reserved: number, options: SpawnCheckOptions): Promise<AdmissionVerdict> {
  const verdict = await admit({modelPath, spec, ...workerShape(spec, options), reserved, ...probe(options)});
  if (!verdict.fits && !spec.force) {
    throw new RbeeError('insufficient_memory', verdict.reason ?? 'the model does not fit');
  }
  return verdict;
}

export async function planSpawn(spec: SpawnWorkerRequest, local: ResolvedModel | null, reserved: number, options: SpawnCheckOptions): Promise<SpawnPlan> {
  const file = local === null || local.kind === 'engine' ? null : local.path;
  const base = {dry_run: true as const, model: local?.name ?? spec.model, model_path: file, device: spec.device, type: spec.type};
  if (file === null) {
    return {
      ...base,
      estimate: null,
      free_memory: await (options.memoryProbe ?? freeMemory)(spec.device),
      fits: true,
      reason:
        local === null
          ? 'the model is not downloaded yet: it is estimated after the download'
          : "a model in the engine's own store: its size is the engine's to know",
    };
  }
  const verdict = await admit({modelPath: file, spec, ...workerShape(spec, options), reserved, ...probe(options)});
  return {...base, estimate: verdict.estimate, free_memory: verdict.freeMemory, fits: verdict.fits, reason: verdict.reason};
}
