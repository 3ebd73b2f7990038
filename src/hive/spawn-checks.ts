/**
 * What a spawn must pass before a worker is recorded: a known type and device, a model file the
 * hive may open, and (unless forced) enough free memory for it.
 */
import {RbeeError} from '../errors.js';
import {resolveModel, type ModelFormat, type ModelProgress, type ResolvedModel} from '../models/resolve-model.js';
import type {DeviceInfo, SpawnPlan, SpawnWorkerRequest, SpawnWorkerRequestBody} from '../protocol/wire.js';
import {workerDefaults} from '../worker/worker-defaults.js';
import {nativeMissingMessage} from '../native/index.js';
import {admit, freeMemory, type AdmissionVerdict} from './admission.js';
import {backendOf} from './default-worker-type.js';
import {checkModelPath} from './model-access.js';

export type SpawnCheckOptions = {
  /** Worker types the loaded adapters offer, with the model format each loads. */
  workerTypes: string[];
  /** Backends the built candle engine runs on (none when it is not built): for the default type. */
  candleBackends: () => Promise<readonly string[]>;
  modelFormats: Record<string, ModelFormat>;
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

/**
 * A candle spawn on a hive whose package carries no built engine fails here, at once, with what to
 * do, rather than as a worker that fails (and restarts) at load; every other type is unaffected.
 */
export async function checkAdapterOptions(spec: Pick<SpawnWorkerRequest, 'type' | 'adapter_options'>, options: Pick<SpawnCheckOptions, 'checkAdapterOptions'>): Promise<void> {
  if (spec.adapter_options === undefined || options.checkAdapterOptions === undefined) {
    return;
  }
  try {
    await options.checkAdapterOptions(spec.type, spec.adapter_options);
  } catch (error) {
    throw new RbeeError('invalid_request', `adapter_options: ${(error as Error).message}`, {cause: error});
  }
}

export async function checkEngineBuilt(spec: Pick<SpawnWorkerRequest, 'type' | 'device'>, options: Pick<SpawnCheckOptions, 'candleBackends'>): Promise<void> {
  if (spec.type !== 'candle') {
    return;
  }
  const backends = await options.candleBackends();
  if (backends.length === 0) {
    throw new RbeeError('invalid_request', nativeMissingMessage());
  }
  if (!backends.includes(backendOf(spec.device))) {
    throw new RbeeError('invalid_request', `this build of rbee's candle engine runs on ${backends.join(', ')}, not ${spec.device}: rebuild it with that feature (native/README.md) or pick another --type`);
  }
}

/** Resolves (downloading if need be) and checks the model file against the allowed folders. */
export async function resolveAllowedModel(reference: string, type: string, options: SpawnCheckOptions, onProgress?: (progress: ModelProgress) => void): Promise<ResolvedModel> {
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
  const base = {dry_run: true as const, model: local?.name ?? spec.model, model_path: local?.path ?? null, device: spec.device, type: spec.type};
  if (local === null) {
    return {...base, estimate: null, free_memory: await (options.memoryProbe ?? freeMemory)(spec.device), fits: true, reason: 'the model is not downloaded yet: it is estimated after the download'};
  }
  const verdict = await admit({modelPath: local.path, spec, ...workerShape(spec, options), reserved, ...probe(options)});
  return {...base, estimate: verdict.estimate, free_memory: verdict.freeMemory, fits: verdict.fits, reason: verdict.reason};
}
