/**
 * Engine subprocesses for adapters. They stay in the worker's process group (the worker is its
 * group's leader), so the hive's stop or a worker's own exit takes them down: no engine survives
 * its worker holding VRAM. A worker killed outright with no hive around (`rbee worker run` under
 * SIGKILL, the OOM killer) runs no exit code, and its group outlives it: on Linux each engine is
 * therefore started through util-linux's `setpriv --pdeathsig SIGKILL`, which asks the kernel to
 * kill it the moment its worker dies, however that happens (setpriv then execs the engine: same pid).
 */
import {spawn, spawnSync} from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import type {EngineProcess, EngineProcessExit} from './adapter-api.js';
import {lineSplitter} from './line-splitter.js';

const live = new Set<EngineProcess>();

/** The wrapper found for each PATH asked about (a spare worker asks before it knows its worker's environment). */
const deathSignalWrappers = new Map<string, string | null>();

/**
 * `setpriv` on PATH when it knows `--pdeathsig` (util-linux 2.33+), on Linux; else null. Asked
 * once per PATH: finding out runs `setpriv --help`, a blocking process start.
 */
export function parentDeathWrapper(): string | null {
  if (process.platform !== 'linux') {
    return null;
  }
  const searched = process.env.PATH ?? '/usr/bin:/bin';
  const known = deathSignalWrappers.get(searched);
  if (known !== undefined) {
    return known;
  }
  let wrapper: string | null = null;
  for (const dir of searched.split(path.delimiter)) {
    const candidate = path.join(dir, 'setpriv');
    if (dir !== '' && fs.existsSync(candidate)) {
      const help = spawnSync(candidate, ['--help'], {encoding: 'utf8', timeout: 5_000});
      wrapper = `${help.stdout ?? ''}`.includes('--pdeathsig') ? candidate : null;
      break;
    }
  }
  deathSignalWrappers.set(searched, wrapper);
  return wrapper;
}

export function spawnEngineProcess(options: {command: string; args: string[]; env?: Record<string, string>; onOutput: (line: string) => void}): EngineProcess {
  // An argument array, never a shell; not detached, so it shares the worker's process group.
  const wrapper = parentDeathWrapper();
  const [command, args] = wrapper === null ? [options.command, options.args] : [wrapper, ['--pdeathsig', 'SIGKILL', '--', options.command, ...options.args]];
  const child = spawn(command, args, {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: {...process.env, ...options.env},
  });
  let recent: string[] = [];
  const onLine = (line: string) => {
    recent = [...recent.slice(-19), line];
    options.onOutput(line);
  };
  // One splitter per stream: a line may arrive in several chunks, and the two streams interleave.
  for (const stream of [child.stdout, child.stderr]) {
    const lines = lineSplitter(onLine);
    stream.on('data', (chunk: Buffer) => lines.push(chunk));
    stream.once('end', () => lines.end());
  }
  const exited = new Promise<EngineProcessExit>(resolve => {
    child.once('error', error => {
      recent.push(`could not start ${options.command}: ${error.message}`);
      resolve({code: null, signal: null});
    });
    child.once('exit', (code, signal) => resolve({code, signal}));
  });
  const engine: EngineProcess = {
    pid: child.pid ?? -1,
    exited,
    recentOutput: () => recent.join('\n'),
    kill(signal: NodeJS.Signals = 'SIGTERM') {
      if (child.exitCode === null && child.signalCode === null) {
        child.kill(signal);
      }
    },
  };
  live.add(engine);
  void exited.then(() => live.delete(engine));
  return engine;
}

/** SIGTERM every engine still running, SIGKILL whatever is left after `graceMs`. */
export async function stopAllEngines(graceMs: number): Promise<void> {
  const engines = [...live];
  for (const engine of engines) {
    engine.kill('SIGTERM');
  }
  const timeout = new Promise(resolve => setTimeout(resolve, graceMs).unref());
  await Promise.race([Promise.all(engines.map(engine => engine.exited)), timeout]);
  for (const engine of live) {
    engine.kill('SIGKILL');
  }
}
