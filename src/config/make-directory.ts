/**
 * Creates a folder and its missing parents one level at a time. Node's `recursive` mkdir loops
 * forever at 100 % CPU where a parent exists but refuses children with ENOENT (/proc/x), so a bad
 * RBEE_HOME would hang rbee instead of failing.
 */
import fs from 'node:fs';
import path from 'node:path';
import {RbeeError} from '../errors.js';

/** `mode` applies to every level created (subject to the umask; callers that need exact bits chmod after). */
export function makeDirectory(folder: string, what: string, mode?: number): void {
  const missing: string[] = [];
  for (let current = path.resolve(folder); !fs.existsSync(current); current = path.dirname(current)) {
    missing.push(current);
    if (path.dirname(current) === current) {
      break;
    }
  }
  for (const level of missing.reverse()) {
    try {
      fs.mkdirSync(level, mode === undefined ? undefined : {mode});
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'EEXIST') {
        throw new RbeeError('invalid_request', `${what} ${folder} cannot be created: ${(error as Error).message}`, {cause: error});
      }
    }
  }
  if (!fs.statSync(folder).isDirectory()) {
    throw new RbeeError('invalid_request', `${what} ${folder} is not a folder`);
  }
}
