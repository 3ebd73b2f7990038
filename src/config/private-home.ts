/**
 * RBEE_HOME holds what other local users must not read: the hive's database (worker pids, ports,
 * secret hashes), worker logs (prompts may appear in them), the model cache. So the home is 0700
 * and every file rbee writes in it 0600, whatever the umask, and a home found wider is narrowed.
 */
import {randomUUID} from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import {RbeeError} from '../errors.js';
import {makeDirectory} from './make-directory.js';

export const privateDirMode = 0o700;
export const privateFileMode = 0o600;

/** Group and other bits: any of them set means another local user may read or enter. */
const sharedBits = 0o077;

function describeMode(mode: number): string {
  return `0${(mode & 0o777).toString(8)}`;
}

/**
 * Creates `dir` (and missing parents) as 0700, or narrows an existing one to 0700. A folder that
 * is not ours, or that cannot be narrowed, is refused: rbee will not keep its state where others
 * can read it.
 */
export function ensurePrivateDir(dir: string, what = 'RBEE_HOME'): void {
  // Not fs.mkdirSync's `recursive`: it spins forever under a parent that refuses children (/proc/x).
  makeDirectory(dir, what, privateDirMode);
  const stats = fs.statSync(dir);
  const uid = process.getuid?.();
  if (uid !== undefined && stats.uid !== uid) {
    throw new RbeeError(
      'invalid_request',
      `${what} ${dir} belongs to uid ${stats.uid}, not to this user (uid ${uid}): rbee keeps its state only in a folder of its own`,
    );
  }
  if ((stats.mode & sharedBits) === 0) {
    return;
  }
  try {
    fs.chmodSync(dir, privateDirMode);
  } catch (error) {
    throw new RbeeError(
      'invalid_request',
      `${what} ${dir} is open to other users (mode ${describeMode(stats.mode)}) and cannot be made 0700: ${(error as Error).message}`,
      {cause: error},
    );
  }
}

/**
 * Strips group and other permissions from everything under `dir` (files keep their owner bits,
 * so an executable stays executable). For homes written by older versions or under a loose umask.
 * Symbolic links are not followed: what they point at is not rbee's to change.
 */
export function narrowTree(dir: string): void {
  let entries: fs.Dirent[];
  try {
    entries = fs.readdirSync(dir, {withFileTypes: true});
  } catch {
    return;
  }
  for (const entry of entries) {
    const full = path.join(dir, entry.name);
    if (entry.isSymbolicLink()) {
      continue;
    }
    try {
      const {mode} = fs.lstatSync(full);
      if ((mode & sharedBits) !== 0) {
        fs.chmodSync(full, mode & 0o700);
      }
    } catch {
      continue; // gone meanwhile, or not ours: the 0700 home still keeps others out
    }
    if (entry.isDirectory()) {
      narrowTree(full);
    }
  }
}

/** Creates `file` empty as 0600 if missing, and narrows it to 0600 if it exists wider. */
export function ensurePrivateFile(file: string): void {
  fs.closeSync(fs.openSync(file, 'a', privateFileMode));
  const {mode} = fs.statSync(file);
  if ((mode & sharedBits) !== 0) {
    fs.chmodSync(file, privateFileMode);
  }
}

/** Writes `file` whole as 0600 (narrowing a file that existed wider). */
export function writePrivateFile(file: string, data: string): void {
  fs.writeFileSync(file, data, {mode: privateFileMode});
  fs.chmodSync(file, privateFileMode);
}

/**
 * Writes `text` to `file` as its owner's alone (0600, its folder made 0700 when missing), whole or
 * not at all: a reader sees the old content or the new, never half of it.
 */
export function writePrivateFileAtomically(file: string, text: string): void {
  fs.mkdirSync(path.dirname(file), {recursive: true, mode: privateDirMode});
  const temporary = `${file}.${process.pid}.${randomUUID()}.tmp`;
  try {
    fs.writeFileSync(temporary, text, {mode: privateFileMode});
    fs.renameSync(temporary, file);
  } catch (error) {
    fs.rmSync(temporary, {force: true});
    throw error;
  }
}
