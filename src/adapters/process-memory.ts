/**
 * Memory of an engine subprocess, for adapters' heartbeats: RAM of its process tree from /proc (vLLM's
 * API server starts an EngineCore process that holds the weights; trtllm-serve starts executors), VRAM
 * of the worker's process group from nvidia-smi's per-process table (nvidia-smi.ts). Linux only; elsewhere the
 * figures are simply absent, never guessed.
 */
import fs from 'node:fs';
import type {AdapterHeartbeat} from './adapter-api.js';
import {cudaIndex} from '../protocol/wire.js';
import {processRss} from './engine-http.js';
import {gpuTotalMemory, nvidiaComputeApps} from './nvidia-smi.js';

type ProcStat = {pid: number; ppid: number; pgrp: number};

function readStat(pid: number): ProcStat | null {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    // The command name may hold spaces and parentheses: the fields start after the last ')'.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return {pid, ppid: Number(fields[1]), pgrp: Number(fields[2])};
  } catch {
    return null;
  }
}

function allStats(): ProcStat[] {
  let names: string[];
  try {
    names = fs.readdirSync('/proc');
  } catch {
    return [];
  }
  return names
    .filter(name => /^\d+$/.test(name))
    .map(name => readStat(Number(name)))
    .filter((stat): stat is ProcStat => stat !== null);
}

/** `root` and every live descendant of it. */
export function processTree(root: number): number[] {
  const children = new Map<number, number[]>();
  for (const stat of allStats()) {
    children.set(stat.ppid, [...(children.get(stat.ppid) ?? []), stat.pid]);
  }
  const found = [root];
  for (let index = 0; index < found.length; index++) {
    found.push(...(children.get(found[index]!) ?? []));
  }
  return found;
}

/** Resident memory of `root` and its descendants, in bytes; undefined where /proc cannot be read. */
export async function processTreeRss(root: number): Promise<number | undefined> {
  const sizes = await Promise.all(processTree(root).map(pid => processRss(pid)));
  const known = sizes.filter((size): size is number => size !== undefined);
  return known.length === 0 ? undefined : known.reduce((sum, size) => sum + size, 0);
}

/**
 * VRAM held by the processes of `pid`'s process group (the worker's group, which every engine
 * process shares), from nvidia-smi's per-process table, plus the card's total when `gpuIndex` is
 * given. Undefined when nvidia-smi is absent or fails, so the caller reports nothing rather than
 * a wrong number.
 */
export async function groupVram(pid: number, gpuIndex: number | undefined): Promise<{used: number; total: number | undefined} | undefined> {
  const apps = await nvidiaComputeApps();
  const group = readStat(pid)?.pgrp;
  if (apps === null || group === undefined) {
    return undefined;
  }
  const used = apps.filter(app => readStat(app.pid)?.pgrp === group).reduce((sum, app) => sum + app.usedMemory, 0);
  return {used, total: gpuIndex === undefined ? undefined : await gpuTotalMemory(gpuIndex)};
}

/**
 * What an engine holds, as heartbeat fields: `ram_used` of its process tree and, on `cuda:N`, the
 * VRAM its worker's process group holds on the card and the card's total. Absent figures stay absent.
 */
export async function engineMemory(pid: number, device: string): Promise<Pick<AdapterHeartbeat, 'ram_used' | 'vram_used' | 'vram_total'>> {
  const cuda = cudaIndex(device);
  const [ramUsed, vram] = await Promise.all([processTreeRss(pid), cuda === undefined ? undefined : groupVram(pid, cuda)]);
  return {
    ...(ramUsed === undefined ? {} : {ram_used: ramUsed}),
    ...(vram === undefined ? {} : {vram_used: vram.used, ...(vram.total === undefined ? {} : {vram_total: vram.total})}),
  };
}
