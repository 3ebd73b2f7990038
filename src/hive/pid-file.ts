/**
 * RBEE_HOME/hive.pid: which hive runs on this home and where it answers, so `rbee hive stop`,
 * `rbee status` and the other commands find it without --hive. Two lines: the pid, then the URL.
 * Written by the hive once it listens (0600, beside and renamed), removed when it closes.
 */
import fs from 'node:fs';
import path from 'node:path';
import {z} from 'zod';
import {isProcessAlive} from './worker-process.js';

export type PidFile = {pid: number; url: string};

const PidFileSchema = z.object({
  pid: z.number().int().positive(),
  url: z.string().regex(/^http:\/\/[A-Za-z0-9.:[\]-]+:\d{1,5}$/),
});

export function pidFilePath(home: string): string {
  return path.join(home, 'hive.pid');
}

export function writePidFile(home: string, entry: PidFile): void {
  const file = pidFilePath(home);
  const temporary = `${file}.${process.pid}.tmp`;
  fs.writeFileSync(temporary, `${entry.pid}\n${entry.url}\n`, {mode: 0o600});
  fs.renameSync(temporary, file);
}

/** What the pid file says, or null when there is none or it is not one (a stale or foreign file is not trusted). */
export function readPidFile(home: string): PidFile | null {
  let text: string;
  try {
    text = fs.readFileSync(pidFilePath(home), 'utf8');
  } catch {
    return null;
  }
  const [pid, url] = text.split('\n');
  const parsed = PidFileSchema.safeParse({pid: Number(pid), url});
  return parsed.success ? parsed.data : null;
}

/** Removes the pid file if it is still this process's (a newer hive's is left alone). */
export function removePidFile(home: string, pid: number = process.pid): void {
  if (readPidFile(home)?.pid === pid) {
    fs.rmSync(pidFilePath(home), {force: true});
  }
}

/** A hive on this machine is still running as `pid` (and not a recycled pid: it names `hive` where procfs tells). */
export function isHiveAlive(pid: number): boolean {
  if (!isProcessAlive(pid)) {
    return false;
  }
  try {
    return fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes('hive');
  } catch {
    return true;
  }
}

/** The hive this home's pid file names, if that process still runs. */
export function runningHive(home: string): PidFile | null {
  const entry = readPidFile(home);
  return entry !== null && isHiveAlive(entry.pid) ? entry : null;
}
