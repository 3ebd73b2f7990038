/**
 * One step of an engine build (git, cmake, go): its output goes line by line to the caller's log
 * and progress parser, and a failure carries the last lines, since that is where compilers say why.
 */
import {RbeeError} from '../errors.js';

export async function runBuildStep(
  command: string,
  args: string[],
  options: {env: NodeJS.ProcessEnv; log?: (line: string) => void; onLine?: (line: string) => void; cwd?: string},
): Promise<void> {
  // Loaded only when a build runs: execa takes ~150 ms to import, and this module is on every worker's start path (the public index).
  const {execa} = await import('execa');
  const child = execa(command, args, {
    all: true,
    reject: false,
    env: {...options.env, GIT_TERMINAL_PROMPT: '0'},
    ...(options.cwd === undefined ? {} : {cwd: options.cwd}),
  });
  child.all?.setEncoding('utf8');
  let tail = '';
  child.all?.on('data', (chunk: string) => {
    tail = (tail + chunk).slice(-4_000);
    for (const line of chunk.split('\n')) {
      if (line.trim() !== '') {
        options.log?.(line);
        options.onLine?.(line);
      }
    }
  });
  const result = await child;
  if (result.exitCode !== 0) {
    throw new RbeeError(
      'engine_error',
      `${command} ${args.slice(0, 2).join(' ')} failed (exit ${result.exitCode ?? result.signal ?? 'unknown'}): ${tail.split('\n').slice(-8).join('\n')}`,
      {cause: result},
    );
  }
}
