/**
 * The devices this machine offers workers: the CPU always, NVIDIA GPUs as nvidia-smi lists them,
 * Metal on Apple silicon. A spawn for a device not listed here is refused before any process starts.
 */
import os from 'node:os';
import {execa} from 'execa';
import type {DeviceInfo} from '../protocol/wire.js';


async function cudaDevices(): Promise<DeviceInfo[]> {
  try {
    const result = await execa('nvidia-smi', ['--query-gpu=index,name,memory.total,memory.used', '--format=csv,noheader,nounits'], {timeout: 10_000, reject: false});
    if (result.exitCode !== 0) {
      return [];
    }
    return result.stdout.split('\n').filter(line => line.trim() !== '').map(line => {
      const [index = '', name = '', total = '0', used = '0'] = line.split(',').map(part => part.trim());
      const mib = 1024 * 1024;
      return {id: `cuda:${index}`, name, memory_total: Number(total) * mib, memory_used: Number(used) * mib};
    });
  } catch {
    return [];
  }
}

export async function listDevices(): Promise<DeviceInfo[]> {
  const cpuName = os.cpus()[0]?.model ?? 'cpu';
  const devices: DeviceInfo[] = [{id: 'cpu', name: cpuName, memory_total: os.totalmem(), memory_used: os.totalmem() - os.freemem()}];
  if (process.platform === 'darwin' && process.arch === 'arm64') {
    devices.push({id: 'metal', name: 'Apple GPU (unified memory)', memory_total: os.totalmem(), memory_used: os.totalmem() - os.freemem()});
  }
  devices.push(...await cudaDevices());
  return devices;
}
