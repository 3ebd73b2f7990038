/**
 * The OS side of a worker: starting its process in a group of its own, watching it end (as our
 * child, or by pid once re-adopted after a hive restart), and signalling the whole group.
 */
import {spawn} from 'node:child_process';
import fs from 'node:fs';

export type ProcessEnd = {code: number | null; signal: NodeJS.Signals | null; error?: string};
export type WatchedProcess = {pid: number; ended: Promise<ProcessEnd>};
export type LaunchOptions = {command: string; args: string[]; env: NodeJS.ProcessEnv; logFile: string};

/** What the supervisor does to the OS, injected so the lifecycle can be tested without processes. */
export type WorkerProcesses = {
  launch: (options: LaunchOptions) => WatchedProcess;
  /** Whether `pid` is still the worker `workerId` (not a recycled pid). */
  isWorker: (pid: number, workerId: string) => boolean;
  /** Watches a process that is not our child (re-adopted) until it ends. */
  watch: (pid: number) => WatchedProcess;
  /** Signals the worker's whole process group. */
  signal: (pid: number, signal: NodeJS.Signals) => void;
};

export function launchWorkerProcess(options: LaunchOptions): WatchedProcess {
  // 0600: a worker's log may hold prompts and paths; it is its owner's only.
  const logFd = fs.openSync(options.logFile, 'a', 0o600);
  try {
    // An argument array, never a shell. The log is a file descriptor the child owns, not a pipe
    // through the hive, so the worker does not die of a broken pipe when the hive goes away and
    // can be re-adopted by the next one. (execa pipes `{file}` targets through the parent.)
    const child = spawn(options.command, options.args, {detached: true, stdio: ['ignore', logFd, logFd], env: options.env});
    const ended = new Promise<ProcessEnd>(resolve => {
      child.once('error', error => resolve({code: null, signal: null, error: error.message}));
      child.once('exit', (code, signal) => resolve({code, signal}));
    });
    if (child.pid === undefined) {
      return {pid: -1, ended};
    }
    return {pid: child.pid, ended};
  } finally {
    fs.closeSync(logFd);
  }
}

export function isProcessAlive(pid: number): boolean {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    if (stat.slice(stat.lastIndexOf(')') + 2).startsWith('Z')) {
      return false;
    }
  } catch {
    // No procfs (macOS): fall back to signal 0.
  }
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/**
 * Whether `pid` is still the worker we started, not a recycled pid: its command line names the
 * worker id. Where there is no procfs, a live pid is taken as ours.
 */
export function isWorkerProcess(pid: number, workerId: string): boolean {
  if (!isProcessAlive(pid)) {
    return false;
  }
  try {
    return fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').includes(workerId);
  } catch {
    return process.platform !== 'linux';
  }
}

/** A process that is not our child (re-adopted): its end is seen by polling. */
export function watchAdoptedProcess(pid: number, pollMs = 200): WatchedProcess {
  const ended = new Promise<ProcessEnd>(resolve => {
    const timer = setInterval(() => {
      if (!isProcessAlive(pid)) {
        clearInterval(timer);
        resolve({code: null, signal: null});
      }
    }, pollMs);
  });
  return {pid, ended};
}

/** Signals the worker's whole process group: the worker and any engine it started. */
export function killGroup(pid: number, signal: NodeJS.Signals): void {
  if (pid <= 0) {
    return;
  }
  try {
    process.kill(-pid, signal);
  } catch {
    // The group is already gone.
  }
}

/** The real thing: process groups of this machine. */
export const osWorkerProcesses: WorkerProcesses = {
  launch: launchWorkerProcess,
  isWorker: isWorkerProcess,
  watch: pid => watchAdoptedProcess(pid),
  signal: killGroup,
};
