/**
 * The devices this machine offers workers: the CPU always, NVIDIA GPUs as nvidia-smi lists them
 * (RBEE_NVIDIA_SMI, through the one reader in adapters/nvidia-smi.ts),
 * Metal on Apple silicon. A spawn for a device not listed here is refused before any process starts.
 */
import os from 'node:os';
import {nvidiaGpus} from '../adapters/nvidia-smi.js';
import type {DeviceInfo} from '../protocol/wire.js';

async function cudaDevices(): Promise<DeviceInfo[]> {
  const gpus = await nvidiaGpus();
  return gpus.map(gpu => ({id: `cuda:${gpu.index}`, name: gpu.name, memory_total: gpu.memoryTotal, memory_used: gpu.memoryUsed}));
}

export async function listDevices(): Promise<DeviceInfo[]> {
  const cpuName = os.cpus()[0]?.model ?? 'cpu';
  const devices: DeviceInfo[] = [{id: 'cpu', name: cpuName, memory_total: os.totalmem(), memory_used: os.totalmem() - os.freemem()}];
  if (process.platform === 'darwin' && process.arch === 'arm64') {
    devices.push({id: 'metal', name: 'Apple GPU (unified memory)', memory_total: os.totalmem(), memory_used: os.totalmem() - os.freemem()});
  }
  devices.push(...(await cudaDevices()));
  return devices;
}
