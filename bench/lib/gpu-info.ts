/**
 * The GPU a CUDA run used, as nvidia-smi names it, and the memory bandwidth its decode speed is
 * bounded by: decoding one token reads every weight once, so model bytes × tokens/s can be set
 * against the card's peak (the "roofline").
 */
import {execFileSync} from 'node:child_process';
import {fileSlug} from './machine.js';

export type GpuInfo = {index: number; name: string; driver: string; memory_mib: number | null};

/** Every GPU nvidia-smi lists; [] when there is no nvidia-smi or it fails. */
export function nvidiaGpus(): GpuInfo[] {
  let text: string;
  try {
    text = execFileSync('nvidia-smi', ['--query-gpu=index,name,driver_version,memory.total', '--format=csv,noheader,nounits'], {
      stdio: ['ignore', 'pipe', 'ignore'],
      timeout: 15_000,
    }).toString();
  } catch {
    return [];
  }
  return text
    .trim()
    .split('\n')
    .filter(line => line.trim() !== '')
    .map(line => {
      const [index = '', name = '', driver = '', memory = ''] = line.split(',').map(cell => cell.trim());
      const memoryMib = Number(memory);
      return {index: Number(index), name, driver, memory_mib: Number.isFinite(memoryMib) && memory !== '' ? memoryMib : null};
    });
}

/** The GPU of a `cuda:N` device (nvidia-smi's N-th card; CUDA_VISIBLE_DEVICES can reorder them). */
export function gpuOfDevice(device: string, gpus: readonly GpuInfo[]): GpuInfo | null {
  const match = /^cuda:(\d+)$/.exec(device);
  if (match === null) {
    return null;
  }
  const visible = process.env.CUDA_VISIBLE_DEVICES?.split(',')
    .map(entry => entry.trim())
    .filter(entry => entry !== '');
  const ordinal = Number(match[1]);
  const physical = visible !== undefined && visible.length > ordinal && /^\d+$/.test(visible[ordinal]!) ? Number(visible[ordinal]) : ordinal;
  return gpus.find(gpu => gpu.index === physical) ?? null;
}

/**
 * Peak memory bandwidth, TB/s, from the vendor's data sheet, by nvidia-smi's name. The more
 * specific names come first: an "H100 PCIe" is not an SXM H100. null for a card not listed here
 * (give --roofline-tbps).
 */
const peakBandwidthTBps: ReadonlyArray<[RegExp, number]> = [
  [/H200/i, 4.8],
  [/H100.*NVL/i, 3.9],
  [/H100.*PCIe/i, 2.0],
  [/H100/i, 3.35], // SXM5, HBM3 ("NVIDIA H100 80GB HBM3")
  [/A100.*(80GB.*PCIe|PCIe.*80GB)/i, 1.935],
  [/A100.*80GB/i, 2.039],
  [/A100/i, 1.555],
  [/L40S/i, 0.864],
  [/RTX 4090/i, 1.008],
];

export function memoryRooflineTBps(gpuName: string): number | null {
  return peakBandwidthTBps.find(([pattern]) => pattern.test(gpuName))?.[1] ?? null;
}

/** The card in a results file's name: h100, h200, else the GPU's name as a slug. */
export function gpuCardSlug(gpu: GpuInfo): string {
  return /H200/i.test(gpu.name) ? 'h200' : /H100/i.test(gpu.name) ? 'h100' : fileSlug(gpu.name);
}
