/**
 * The one reader of nvidia-smi, for the hive (devices, free memory at admission) and for adapters
 * (VRAM per process). RBEE_NVIDIA_SMI names another program: an unusual install, or a test's
 * stand-in. Every answer is "what nvidia-smi said" or nothing: a missing or failing nvidia-smi
 * gives no figure rather than a made-up one.
 */
import {execFile} from 'node:child_process';
import {envValue} from '../config/env.js';

const mib = 1024 * 1024;

/** The program asked: RBEE_NVIDIA_SMI, else `nvidia-smi` on PATH. */
export function nvidiaSmiProgram(env: NodeJS.ProcessEnv = process.env): string {
  return envValue('RBEE_NVIDIA_SMI', env) ?? 'nvidia-smi';
}

/** Programs found missing: a machine without NVIDIA drivers is not asked again at every heartbeat. */
const missingPrograms = new Set<string>();

/**
 * Runs nvidia-smi with a CSV query (`--format=csv,noheader,nounits` is added) and answers its rows,
 * each a list of trimmed fields; null when the program is missing, fails or times out.
 */
export function queryNvidiaSmi(args: readonly string[], options: {env?: NodeJS.ProcessEnv; timeoutMs?: number} = {}): Promise<string[][] | null> {
  const program = nvidiaSmiProgram(options.env);
  if (missingPrograms.has(program)) {
    return Promise.resolve(null);
  }
  return new Promise(resolve => {
    execFile(program, [...args, '--format=csv,noheader,nounits'], {timeout: options.timeoutMs ?? 10_000, encoding: 'utf8'}, (error, stdout) => {
      if (error !== null) {
        if ((error as NodeJS.ErrnoException).code === 'ENOENT') {
          missingPrograms.add(program);
        }
        resolve(null);
        return;
      }
      resolve(
        stdout
          .split('\n')
          .filter(line => line.trim() !== '')
          .map(line => line.split(',').map(field => field.trim())),
      );
    });
  });
}

/** A figure in MiB as nvidia-smi prints it, in bytes; undefined for "[N/A]" and the like. */
function bytesOf(field: string | undefined): number | undefined {
  const value = Number(field);
  return field === undefined || field === '' || !Number.isFinite(value) ? undefined : value * mib;
}

export type NvidiaGpu = {index: number; name: string; memoryTotal: number; memoryUsed: number};

/** Every card nvidia-smi lists, in its order; [] when there is no nvidia-smi or it fails. */
export async function nvidiaGpus(options: {env?: NodeJS.ProcessEnv} = {}): Promise<NvidiaGpu[]> {
  const rows = await queryNvidiaSmi(['--query-gpu=index,name,memory.total,memory.used'], options);
  return (rows ?? []).flatMap(([index, name = '', total, used]) => {
    const number = Number(index);
    return Number.isInteger(number) ? [{index: number, name, memoryTotal: bytesOf(total) ?? 0, memoryUsed: bytesOf(used) ?? 0}] : [];
  });
}

/** The driver's free-memory figure for card `index`, in bytes; undefined when it cannot be read. */
export async function gpuFreeMemory(index: number, options: {env?: NodeJS.ProcessEnv} = {}): Promise<number | undefined> {
  const rows = await queryNvidiaSmi(['--query-gpu=memory.free', '-i', String(index)], options);
  return bytesOf(rows?.[0]?.[0]);
}

/** A card's memory does not change while the process runs: asked once per card (and program), not every heartbeat. */
const cardTotals = new Map<string, Promise<number | undefined>>();

export function gpuTotalMemory(index: number, options: {env?: NodeJS.ProcessEnv} = {}): Promise<number | undefined> {
  const key = `${nvidiaSmiProgram(options.env)}\0${index}`;
  let total = cardTotals.get(key);
  if (total === undefined) {
    total = queryNvidiaSmi(['--query-gpu=memory.total', '-i', String(index)], options).then(rows => {
      const bytes = bytesOf(rows?.[0]?.[0]);
      if (bytes === undefined) {
        cardTotals.delete(key); // ask again next time rather than remember a failure
      }
      return bytes;
    });
    cardTotals.set(key, total);
  }
  return total;
}

export type ComputeApp = {pid: number; usedMemory: number};

/** The processes holding GPU memory, with what each holds; null when nvidia-smi cannot say. */
export async function nvidiaComputeApps(options: {env?: NodeJS.ProcessEnv} = {}): Promise<ComputeApp[] | null> {
  const rows = await queryNvidiaSmi(['--query-compute-apps=pid,used_memory'], {timeoutMs: 3_000, ...options});
  if (rows === null) {
    return null;
  }
  return rows.flatMap(([pid, used]) => {
    const usedMemory = bytesOf(used);
    return Number.isInteger(Number(pid)) && usedMemory !== undefined ? [{pid: Number(pid), usedMemory}] : [];
  });
}
