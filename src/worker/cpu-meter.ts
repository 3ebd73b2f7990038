/**
 * CPU use of a worker for its heartbeat: the worker's process tree (its engine subprocesses
 * included, where the work of llama-server or vLLM happens), as % of one core since the last
 * reading. Linux reads /proc; elsewhere only the worker's own process is measured.
 */
import fs from 'node:fs';
import {processTree} from '../adapters/process-memory.js';

/** Clock ticks a second in /proc/<pid>/stat: 100 on every Linux architecture Node runs on. */
const ticksPerSecond = 100;

/** utime + stime (+ the reaped children's, for the root), in seconds; null where /proc cannot be read. */
function cpuSeconds(pid: number, withReaped: boolean): number | null {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    // After the name: state(0) ... utime(11) stime(12) cutime(13) cstime(14).
    const own = Number(fields[11]) + Number(fields[12]);
    const reaped = withReaped ? Number(fields[13]) + Number(fields[14]) : 0;
    return (own + reaped) / ticksPerSecond;
  } catch {
    return null;
  }
}

function treeCpuSeconds(root: number): number {
  const rootSeconds = cpuSeconds(root, true);
  if (rootSeconds === null) {
    const usage = process.cpuUsage();
    return (usage.user + usage.system) / 1e6;
  }
  let total = rootSeconds;
  for (const pid of processTree(root)) {
    if (pid !== root) {
      total += cpuSeconds(pid, false) ?? 0;
    }
  }
  return total;
}

export type CpuMeter = {
  /** % of one core used since the previous call (the first call measures from the meter's creation). */
  sample(): number;
};

export function createCpuMeter(root: number = process.pid, now: () => number = () => performance.now()): CpuMeter {
  let lastSeconds = treeCpuSeconds(root);
  let lastAt = now();
  return {
    sample() {
      const seconds = treeCpuSeconds(root);
      const at = now();
      const elapsed = (at - lastAt) / 1_000;
      // A child that ended between readings takes its time with it: never report less than nothing.
      const used = Math.max(0, seconds - lastSeconds);
      lastSeconds = seconds;
      lastAt = at;
      return elapsed <= 0 ? 0 : Math.round((used / elapsed) * 1_000) / 10;
    },
  };
}
