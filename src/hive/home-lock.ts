/**
 * One hive per RBEE_HOME. Two hives on one home would both adopt and restart the same workers
 * (two pids, one log, one database row), so the home is locked for the hive's whole life.
 *
 * The lock is an exclusive SQLite lock (a POSIX advisory lock the kernel drops when the process
 * dies, however it dies): a crashed hive leaves no stale lock to judge by pid, and a recycled pid
 * cannot keep a home locked. `hive.json` beside it (home-owner.ts) tells a second hive, and the
 * CLI, which hive holds the lock and where it answers.
 */
import path from 'node:path';
import Database from 'better-sqlite3';
import {ensurePrivateFile} from '../config/private-home.js';
import {RbeeError} from '../errors.js';
import {readHomeOwner, removeHomeOwner, writeHomeOwner, type HomeOwner} from './home-owner.js';

export type HomeLock = {
  /** Records where the hive listens, once it does: for a second hive's error message and for the CLI to find it. */
  setUrl(url: string): void;
  release(): void;
};

export function homeLockPath(home: string): string {
  return path.join(home, 'hive.lock');
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
    throw new RbeeError(
      'home_locked',
      `${who} is running on RBEE_HOME ${home}: stop it first (rbee hive stop${owner?.url ? ` --hive ${owner.url}` : ''}) or use another RBEE_HOME`,
      {cause: error},
    );
  }
  const owner: HomeOwner = {pid: process.pid, url: null, started_at: new Date().toISOString()};
  writeHomeOwner(home, owner);
  let released = false;
  // A hive that exits without closing (an uncaught error) takes its record along; the kernel frees the lock.
  const onExit = () => removeHomeOwner(home);
  process.once('exit', onExit);
  return {
    setUrl(url: string) {
      owner.url = url;
      writeHomeOwner(home, owner);
    },
    release() {
      if (released) {
        return;
      }
      released = true;
      process.off('exit', onExit);
      // The owner file first: once the lock is free, a new hive may write its own.
      removeHomeOwner(home);
      db.close();
    },
  };
}
