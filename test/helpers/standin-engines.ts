/**
 * The stand-in engines (test/fixtures/standins/*.mjs) that workers start: found under a worker's
 * process tree by their script's name, with their arguments and URL, and remembered so that a
 * test file's teardown can kill any a failed test left behind.
 */
import fs from 'node:fs';
import {descendants, isAlive} from './process-tree.js';

/** A process's argument list, from /proc. */
export function commandLine(pid: number): string[] {
  return fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').filter(Boolean);
}

export type StandinEngine = {pid: number; args: string[]; url: string};

export class StandinEngines {
  readonly #script: string;
  readonly #seen = new Set<number>();

  /** `script`: the stand-in's file name, e.g. `vllm-standin.mjs`. */
  constructor(script: string) {
    this.#script = script;
  }

  /** The stand-in under the worker process `workerPid`: its pid, its arguments after the script, its URL (its `--port`). */
  of(worker: {pid: number; worker_id: string}): StandinEngine {
    const isStandin = (arg: string) => arg.endsWith(this.#script);
    const pid = descendants(worker.pid).find(candidate => commandLine(candidate).some(isStandin));
    if (pid === undefined) {
      throw new Error(`no ${this.#script} under worker ${worker.worker_id}`);
    }
    this.#seen.add(pid);
    const args = commandLine(pid);
    const rest = args.slice(args.findIndex(isStandin) + 1);
    return {pid, args: rest, url: `http://127.0.0.1:${rest[rest.indexOf('--port') + 1]}`};
  }

  /** Kills every stand-in seen that is still alive (after the hive's stop, which should have). */
  killLeftovers(): void {
    for (const pid of this.#seen) {
      if (isAlive(pid)) {
        process.kill(pid, 'SIGKILL');
      }
    }
  }
}
