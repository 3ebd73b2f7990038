/** CPU time of another process, from /proc/<pid>/stat (Linux only), to measure a server apart from its load generator. */
import {execFileSync} from 'node:child_process';
import fs from 'node:fs';

let ticksPerSecond: number | null = null;

function clockTicks(): number {
  if (ticksPerSecond === null) {
    try {
      ticksPerSecond =
        Number(
          execFileSync('getconf', ['CLK_TCK'], {stdio: ['ignore', 'pipe', 'ignore'], timeout: 5_000})
            .toString()
            .trim(),
        ) || 100;
    } catch {
      ticksPerSecond = 100; // the value on every mainstream Linux
    }
  }
  return ticksPerSecond;
}

/** utime + stime of `pid`, in seconds; fields 14 and 15 of the stat line, counted after the command name. */
export function processCpuSeconds(pid: number): number {
  const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
  // The command name may hold spaces and parentheses: the fields start after the last ')'.
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(fields[11]) + Number(fields[12])) / clockTicks();
}

/** This process's own user + system CPU, in seconds. */
export function ownCpuSeconds(): number {
  const usage = process.cpuUsage();
  return (usage.user + usage.system) / 1e6;
}

/**
 * This process's user + system CPU and that of its children that have exited and been waited for
 * (cutime + cstime, fields 16 and 17), in seconds: what a benchmark that runs a peer binary to
 * completion spent in all. Falls back to the process alone where /proc is missing.
 */
export function ownAndChildrenCpuSeconds(): number {
  try {
    const stat = fs.readFileSync('/proc/self/stat', 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return (Number(fields[11]) + Number(fields[12]) + Number(fields[13]) + Number(fields[14])) / clockTicks();
  } catch {
    return ownCpuSeconds();
  }
}
