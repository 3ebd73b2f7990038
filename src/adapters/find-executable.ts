/**
 * Where a program an adapter would spawn is, found the way spawning it would find it: a name with
 * a slash as a path, a bare name on PATH. Adapters use it to say an engine is not installed
 * before a worker is started for it.
 */
import fs from 'node:fs';
import path from 'node:path';

function isExecutable(file: string): boolean {
  try {
    fs.accessSync(file, fs.constants.X_OK);
    return fs.statSync(file).isFile();
  } catch {
    return false;
  }
}

/** The program's path, or undefined when there is none that can be run. */
export function findExecutable(command: string, env: NodeJS.ProcessEnv = process.env): string | undefined {
  if (command.includes('/')) {
    return isExecutable(command) ? path.resolve(command) : undefined;
  }
  for (const dir of (env.PATH ?? '').split(path.delimiter)) {
    if (dir !== '' && isExecutable(path.join(dir, command))) {
      return path.join(dir, command);
    }
  }
  return undefined;
}
