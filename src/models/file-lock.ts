/**
 * A lock file that lets one process fetch a model while others sharing the cache wait, instead
 * of all downloading it (or writing the same `.part` file at once). A holder that dies leaves its
 * lock behind, so a lock counts as stale when its process is gone or it stopped being refreshed.
 */
import {randomUUID} from 'node:crypto';
import fs from 'node:fs/promises';
import os from 'node:os';
import {setTimeout as sleep} from 'node:timers/promises';

export type FileLockOptions = {
  path: string;
  /** A lock untouched this long is abandoned (the holder refreshes it four times as often). */
  staleMs?: number;
  pollMs?: number;
  signal?: AbortSignal;
};

type LockRecord = {pid: number; host: string; token: string};

/** Runs `task` while holding the lock, waiting for it first if another process has it. */
export async function withFileLock<T>(options: FileLockOptions, task: () => Promise<T>): Promise<T> {
  const staleMs = options.staleMs ?? 60_000;
  for (;;) {
    options.signal?.throwIfAborted();
    const release = await tryLock(options.path, staleMs);
    if (release) {
      try {
        return await task();
      } finally {
        await release();
      }
    }
    await sleep(options.pollMs ?? 250, undefined, options.signal ? {signal: options.signal} : {});
  }
}

async function tryLock(lockPath: string, staleMs: number): Promise<(() => Promise<void>) | null> {
  const record: LockRecord = {pid: process.pid, host: os.hostname(), token: randomUUID()};
  try {
    await fs.writeFile(lockPath, JSON.stringify(record), {flag: 'wx'});
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'EEXIST') {
      throw error;
    }
    if (await isStale(lockPath, staleMs)) {
      await fs.rm(lockPath, {force: true});
    }
    return null;
  }

  const heartbeat = setInterval(
    () => {
      const now = new Date();
      fs.utimes(lockPath, now, now).catch(() => {});
    },
    Math.max(50, Math.floor(staleMs / 4)),
  );
  heartbeat.unref();

  return async () => {
    clearInterval(heartbeat);
    // If ours was judged stale and broken, the file there now belongs to someone else.
    if ((await readRecord(lockPath))?.token === record.token) {
      await fs.rm(lockPath, {force: true});
    }
  };
}

async function isStale(lockPath: string, staleMs: number): Promise<boolean> {
  let modifiedAt: number;
  try {
    modifiedAt = (await fs.stat(lockPath)).mtimeMs;
  } catch {
    return false;
  }
  if (Date.now() - modifiedAt > staleMs) {
    return true;
  }
  // A record still being written reads as null: treated as live.
  const record = await readRecord(lockPath);
  return record !== null && record.host === os.hostname() && !isProcessAlive(record.pid);
}

async function readRecord(lockPath: string): Promise<LockRecord | null> {
  try {
    const parsed = JSON.parse(await fs.readFile(lockPath, 'utf8')) as Partial<LockRecord>;
    return typeof parsed.pid === 'number' && typeof parsed.host === 'string' && typeof parsed.token === 'string'
      ? {pid: parsed.pid, host: parsed.host, token: parsed.token}
      : null;
  } catch {
    return null;
  }
}

function isProcessAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    // EPERM: it exists but belongs to another user.
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}
