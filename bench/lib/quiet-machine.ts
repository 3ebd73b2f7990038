/**
 * On a small shared machine a neighbour (a Rust build, a test suite) can halve an engine's tokens/s
 * for a sample. These helpers measure how many cores *other* processes used while a sample ran
 * (the whole machine's busy CPU from /proc/stat, less this process and its waited-for children)
 * and wait, within a bound, for a quiet moment before each sample. Linux only; elsewhere they
 * report NaN and do not wait.
 */
import {setTimeout as sleep} from 'node:timers/promises';
import {machineCpuSeconds} from './llama-server-process.js';
import {ownAndChildrenCpuSeconds} from './proc-cpu.js';

type Reading = {at: number; machine: number; own: number};

function read(): Reading | null {
  try {
    return {at: performance.now(), machine: machineCpuSeconds().busy, own: ownAndChildrenCpuSeconds()};
  } catch {
    return null; // no /proc/stat
  }
}

/** Starts a window; the function it returns gives the cores other processes used since, on average. */
export function foreignCpuWindow(): () => number {
  const start = read();
  return () => {
    const end = read();
    if (start === null || end === null || end.at <= start.at) {
      return Number.NaN;
    }
    const foreign = end.machine - start.machine - (end.own - start.own);
    return Math.max(0, foreign) / ((end.at - start.at) / 1000);
  };
}

export type QuietWait = {waited_ms: number; quiet: boolean; last_foreign_cores: number};

/**
 * Waits until other processes used under `maxCores` for two windows of `windowMs` in a row, or
 * `maxWaitMs` passed (then the sample runs anyway and says so through its foreign_cores).
 */
export async function waitForQuiet(options: {maxCores: number; maxWaitMs: number; windowMs?: number}): Promise<QuietWait> {
  const windowMs = options.windowMs ?? 500;
  const began = performance.now();
  let calm = 0;
  let last = Number.NaN;
  while (performance.now() - began < options.maxWaitMs) {
    const window = foreignCpuWindow();
    await sleep(windowMs);
    last = window();
    if (!Number.isFinite(last)) {
      return {waited_ms: 0, quiet: true, last_foreign_cores: last};
    }
    calm = last < options.maxCores ? calm + 1 : 0;
    if (calm >= 2) {
      return {waited_ms: Math.round(performance.now() - began), quiet: true, last_foreign_cores: last};
    }
  }
  return {waited_ms: Math.round(performance.now() - began), quiet: false, last_foreign_cores: last};
}
