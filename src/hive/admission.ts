/**
 * Admission: before a worker starts, estimate what its model will take (weights + KV cache for
 * its context, from the GGUF's metadata) and compare with what the device has free, so a model
 * that cannot fit is refused with a clear error instead of dying half-loaded.
 */
import fs from 'node:fs';
import os from 'node:os';
import {gpuFreeMemory} from '../adapters/nvidia-smi.js';
import {RbeeError} from '../errors.js';
import {EstimateCache, fileIdentity} from './estimate-cache.js';
import {cudaIndex, type SpawnWorkerRequest} from '../protocol/wire.js';

export type MemoryEstimate = {weights: number; context: number; total: number};

export type AdmissionVerdict = {estimate: MemoryEstimate; freeMemory: number; fits: boolean; reason: string | null};

/**
 * A model folder (vLLM, TensorRT-LLM) has no GGUF metadata to read: its weight files are the
 * estimate, and the engine's own cache sizing (e.g. vLLM's gpu_memory_utilization) decides the rest.
 */
function estimateFolder(folder: string): MemoryEstimate {
  let weights = 0;
  for (const entry of fs.readdirSync(folder, {withFileTypes: true, recursive: true})) {
    if (entry.isFile() && /\.(safetensors|bin|pt|pth|engine)$/.test(entry.name)) {
      weights += fs.statSync(`${entry.parentPath}/${entry.name}`).size;
    }
  }
  return {weights, context: 0, total: weights};
}

/** Estimates made so far in this hive, by model file and worker shape. */
const estimates = new EstimateCache<MemoryEstimate>();

export async function estimateMemory(options: {modelPath: string; device: string; contextSize: number; parallel: number}): Promise<MemoryEstimate> {
  const stats = fs.statSync(options.modelPath, {bigint: true});
  if (stats.isDirectory()) {
    return estimateFolder(options.modelPath);
  }
  // One estimate for every card of a kind: it depends on where the layers go (all on the device, or none on the CPU), not on which card.
  const shape = `${options.device.replace(/:\d+$/, '')}:${options.contextSize}:${options.parallel}`;
  const estimate = await estimates.get(fileIdentity(stats), shape, () => estimateGguf(options));
  return {...estimate};
}

async function estimateGguf(options: {modelPath: string; device: string; contextSize: number; parallel: number}): Promise<MemoryEstimate> {
  const {readGgufFileInfo, GgufInsights} = await import('node-llama-cpp');
  let insights: Awaited<ReturnType<typeof GgufInsights.from>>;
  try {
    insights = await GgufInsights.from(await readGgufFileInfo(options.modelPath));
  } catch (error) {
    throw new RbeeError('invalid_request', `${options.modelPath} is not a readable GGUF model: ${(error as Error).message}`, {cause: error});
  }
  const gpuLayers = options.device === 'cpu' ? 0 : insights.totalLayers;
  const model = await insights.estimateModelResourceRequirementsV2({gpuLayers});
  const contextOptions = {contextSize: options.contextSize * options.parallel, modelGpuLayers: gpuLayers, sequences: options.parallel};
  // The simulated (V2) estimate matches what llama.cpp allocates, but stops growing past the
  // context the model was trained on; beyond that the formula (V1) is the honest, larger figure.
  const withinTraining = insights.trainContextSize === undefined || contextOptions.contextSize <= insights.trainContextSize;
  const context = withinTraining
    ? await insights.estimateContextResourceRequirementsV2(contextOptions)
    : insights.estimateContextResourceRequirements(contextOptions);
  const onDevice = (requirement: {cpuRam: number; gpuVram: number}) => (gpuLayers === 0 ? requirement.cpuRam : requirement.gpuVram);
  const weights = Math.ceil(onDevice(model));
  const contextBytes = Math.ceil(onDevice(context));
  return {weights, context: contextBytes, total: weights + contextBytes};
}

/** Memory the device can still give: MemAvailable for the CPU, the driver's free figure for a GPU. */
export async function freeMemory(device: string): Promise<number> {
  const cuda = cudaIndex(device);
  if (cuda !== undefined) {
    return (await gpuFreeMemory(cuda)) ?? 0;
  }
  try {
    const available = /^MemAvailable:\s+(\d+) kB$/m.exec(fs.readFileSync('/proc/meminfo', 'utf8'));
    if (available !== null) {
      return Number(available[1]) * 1024;
    }
  } catch {
    // not Linux
  }
  return os.freemem();
}

/**
 * The verdict for one spawn. `reserved` is what workers still loading on the same device will
 * take but have not allocated yet, so two spawns in a row cannot both claim the same free memory.
 */
export async function admit(options: {
  modelPath: string;
  spec: SpawnWorkerRequest;
  contextSize: number;
  parallel: number;
  reserved: number;
  /** The free-memory probe (the driver's figure for a GPU); injected where a test stands in for the device. */
  probe?: (device: string) => Promise<number>;
}): Promise<AdmissionVerdict> {
  const estimate = await estimateMemory({
    modelPath: options.modelPath,
    device: options.spec.device,
    contextSize: options.contextSize,
    parallel: options.parallel,
  });
  const free = Math.max(0, (await (options.probe ?? freeMemory)(options.spec.device)) - options.reserved);
  const fits = estimate.total <= free;
  const mib = (bytes: number) => `${Math.round(bytes / 1024 / 1024)} MiB`;
  return {
    estimate,
    freeMemory: free,
    fits,
    reason: fits
      ? null
      : `the model needs about ${mib(estimate.total)} (weights ${mib(estimate.weights)} + context ${mib(estimate.context)}) but ${options.spec.device} has ${mib(free)} free; lower context_size/parallel, pick another device, or pass force to try anyway`,
  };
}
