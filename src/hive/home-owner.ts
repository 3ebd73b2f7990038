/**
 * RBEE_HOME/hive.json, the one record of the hive running on a home: its pid and, once it listens,
 * its URL. Only the hive holding the home's lock writes it (home-lock.ts), and removes it when it
 * closes; the CLI reads it to find that hive without --hive (`hive stop`, `status`, every command,
 * and `hive start --detach` waiting for its child). Apart from the lock so that reading it loads
 * no SQLite, and judged by the pid's liveness because a hive that was killed leaves it behind.
 */
import fs from 'node:fs';
import path from 'node:path';
import {z} from 'zod';
import {writePrivateFile} from '../config/private-home.js';
import {isProcessAlive} from './worker-process.js';

const HomeOwnerSchema = z.object({
  pid: z.number().int().positive(),
  /** Null until the hive has bound its port. */
  url: z
    .string()
    .regex(/^http:\/\/[A-Za-z0-9.:[\]-]+:\d{1,5}$/)
    .nullable(),
  started_at: z.string(),
});
export type HomeOwner = z.infer<typeof HomeOwnerSchema>;

export function homeOwnerPath(home: string): string {
  return path.join(home, 'hive.json');
}

/** Who holds the home, as the holder wrote it; null when there is no record or it is not one (a foreign file is not trusted). */
export function readHomeOwner(home: string): HomeOwner | null {
  try {
    const parsed = HomeOwnerSchema.safeParse(JSON.parse(fs.readFileSync(homeOwnerPath(home), 'utf8')));
    return parsed.success ? parsed.data : null;
  } catch {
    return null;
  }
}

/** For the lock holder only: the record, whole, 0600 (a reader sees the old record or the new one). */
export function writeHomeOwner(home: string, owner: HomeOwner): void {
  const file = homeOwnerPath(home);
  const temporary = `${file}.${process.pid}.tmp`;
  writePrivateFile(temporary, `${JSON.stringify(owner)}\n`);
  fs.renameSync(temporary, file);
}

/** Removes the record if it is still `pid`'s (a newer hive's is left alone). */
export function removeHomeOwner(home: string, pid: number = process.pid): void {
  if (readHomeOwner(home)?.pid === pid) {
    fs.rmSync(homeOwnerPath(home), {force: true});
  }
}

/** A hive on this machine still runs as `pid` (and not a recycled pid: it names `hive` where procfs tells). */
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

/** The hive running on this home and where it answers; null when none runs or it does not listen yet. */
export function runningHive(home: string): {pid: number; url: string} | null {
  const owner = readHomeOwner(home);
  return owner !== null && owner.url !== null && isHiveAlive(owner.pid) ? {pid: owner.pid, url: owner.url} : null;
}
