/**
 * One hive per RBEE_HOME. Two hives on one home would both adopt and restart the same workers
 * (two pids, one log, one database row), so the home is locked for the hive's whole life.
 *
 * The lock is an exclusive SQLite lock (a POSIX advisory lock the kernel drops when the process
 * dies, however it dies): a crashed hive leaves no stale lock to judge by pid, and a recycled pid
 * cannot keep a home locked. `hive.json` beside it only tells a second hive who holds the lock.
 */
import fs from 'node:fs';
import path from 'node:path';
import Database from 'better-sqlite3';
import {z} from 'zod';
import {ensurePrivateFile, writePrivateFile} from '../config/private-home.js';
import {RbeeError} from '../errors.js';

const OwnerSchema = z.object({pid: z.number().int().positive(), url: z.string().nullable(), started_at: z.string()});
export type HomeOwner = z.infer<typeof OwnerSchema>;

export type HomeLock = {
  /** Records where the hive listens, once it does, for a second hive's error message. */
  setUrl(url: string): void;
  release(): void;
};

export function homeLockPath(home: string): string {
  return path.join(home, 'hive.lock');
}

export function homeOwnerPath(home: string): string {
  return path.join(home, 'hive.json');
}

/** Who holds the home, as the holder wrote it; null while it has not written it yet (or it is unreadable). */
export function readHomeOwner(home: string): HomeOwner | null {
  try {
    const parsed = OwnerSchema.safeParse(JSON.parse(fs.readFileSync(homeOwnerPath(home), 'utf8')));
    return parsed.success ? parsed.data : null;
  } catch {
    return null;
  }
}

/** Takes the home's lock or throws `home_locked` naming the hive that holds it. Touches nothing else in the home. */
export function lockHome(home: string): HomeLock {
  const file = homeLockPath(home);
  ensurePrivateFile(file);
  const db = new Database(file, {timeout: 0});
  try {
    // No journal file beside the lock; the lock is held from BEGIN EXCLUSIVE until the connection closes.
    db.pragma('journal_mode = MEMORY');
    db.pragma('locking_mode = EXCLUSIVE');
    db.exec('BEGIN EXCLUSIVE');
  } catch (error) {
    db.close();
    if ((error as {code?: string}).code !== 'SQLITE_BUSY') {
      throw new RbeeError('internal', `cannot lock ${file}: ${(error as Error).message}`, {cause: error});
    }
    const owner = readHomeOwner(home);
    const who = owner === null ? 'another hive' : `another hive (pid ${owner.pid}, ${owner.url ?? 'still starting'})`;
    throw new RbeeError('home_locked', `${who} is running on RBEE_HOME ${home}: stop it first (rbee hive stop${owner?.url ? ` --hive ${owner.url}` : ''}) or use another RBEE_HOME`, {cause: error});
  }
  const owner: HomeOwner = {pid: process.pid, url: null, started_at: new Date().toISOString()};
  writePrivateFile(homeOwnerPath(home), `${JSON.stringify(owner)}\n`);
  let released = false;
  return {
    setUrl(url: string) {
      owner.url = url;
      writePrivateFile(homeOwnerPath(home), `${JSON.stringify(owner)}\n`);
    },
    release() {
      if (released) {
        return;
      }
      released = true;
      // The owner file first: once the lock is free, a new hive may write its own.
      if (readHomeOwner(home)?.pid === process.pid) {
        fs.rmSync(homeOwnerPath(home), {force: true});
      }
      db.close();
    },
  };
}
