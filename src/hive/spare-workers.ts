/**
 * Spare worker processes: for each worker type the hive has started (or its catalogue names), one
 * `rbee worker spare` process booted ahead of time, Node and a worker's imports done, holding no
 * model. A spawn of that type takes it instead of starting a process: the spare gets the spawn's
 * `worker run` arguments and environment on its stdin and runs on as that worker (see
 * src/worker/spare-process.ts). What a spawn saves is the worker's own start, a few hundred ms of
 * CPU before its engine can start.
 *
 * The rules a worker process follows hold for a spare: its own process group (started detached),
 * its log at logs/<worker id>.log, its environment without the hive's credentials. The id is
 * chosen when the spare starts and is in its command line, so a hive restarted later re-adopts a
 * worker born of a spare as it does any other, by that id. An unassigned spare dies with its hive:
 * its stdin is the hive's pipe, and its end (the hive stopped, or was killed) makes it exit; a
 * restarted hive also kills any spare of its own it finds alive that it did not re-adopt.
 */
import {spawn, type ChildProcess} from 'node:child_process';
import {randomUUID} from 'node:crypto';
import fs from 'node:fs';
import type {SpareAssignment, SpareInfo} from '../protocol/wire.js';
import {rbeeBin, workerLogFile} from './worker-launch.js';
import {killGroup, type LaunchOptions, type ProcessEnd, type WatchedProcess} from './worker-process.js';

export type SpareWorkersOptions = {
  logsDir: string;
  /** What a worker's environment starts from: the hive's, less its credentials. */
  env: NodeJS.ProcessEnv;
  /** The hive's config file (its workers read it for their adapter): a spare reads it ahead. */
  configPath: string | null;
  log: (message: string) => void;
};

export type Spare = {readonly type: string; readonly workerId: string; readonly pid: number};

type SpareProcess = Spare & {child: ChildProcess; ended: Promise<ProcessEnd>; booted: boolean; exited: boolean; handedOver: boolean};

/** A type whose spares keep dying on their own (a broken install) gets no more of them. */
const maxUnexpectedExits = 3;

export class SpareWorkers {
  readonly #options: SpareWorkersOptions;
  /** The live spare of each type. */
  readonly #spares = new Map<string, SpareProcess>();
  /** Types a spare is kept for, and since when each has lacked one (null: it has one). */
  readonly #wanted = new Map<string, number | null>();
  readonly #unexpectedExits = new Map<string, number>();
  #closed = false;

  constructor(options: SpareWorkersOptions) {
    this.#options = options;
  }

  /** From now on a spare of `type` is kept (started at the next `refill`). */
  want(type: string): void {
    if (!this.#closed && !this.#wanted.has(type) && (this.#unexpectedExits.get(type) ?? 0) < maxUnexpectedExits) {
      this.#wanted.set(type, this.#spares.has(type) ? null : Date.now());
    }
  }

  /** How long the type that has lacked its spare longest has lacked it, in ms; null when none lacks one. */
  lackingForMs(now = Date.now()): number | null {
    let oldest: number | null = null;
    for (const since of this.#wanted.values()) {
      if (since !== null && (oldest === null || since < oldest)) {
        oldest = since;
      }
    }
    return oldest === null ? null : now - oldest;
  }

  /** Starts a spare for each wanted type that lacks one. The caller picks the moment: each start is a Node boot's worth of CPU. */
  refill(): void {
    for (const [type, since] of this.#wanted) {
      if (since !== null && !this.#closed) {
        this.#start(type);
      }
    }
  }

  /** The spare of `type`, if one is alive, for a spawn of that type: the worker's id is the spare's. */
  take(type: string): Spare | null {
    const spare = this.#spares.get(type);
    if (spare === undefined || spare.exited) {
      return null;
    }
    this.#spares.delete(type);
    if (this.#wanted.has(type)) {
      this.#wanted.set(type, Date.now());
    }
    spare.handedOver = true;
    return spare;
  }

  /**
   * Makes a taken spare the worker `launch` describes (its arguments must name the spare's id):
   * its process, to watch as any worker's; null when the spare died meanwhile (start one afresh).
   */
  assign(taken: Spare, launch: LaunchOptions): WatchedProcess | null {
    const spare = taken as SpareProcess;
    const [bin, ...args] = launch.args;
    if (spare.exited || spare.child.stdin === null || launch.command !== process.execPath || bin !== rbeeBin) {
      return null;
    }
    const env = Object.fromEntries(Object.entries(launch.env).filter((entry): entry is [string, string] => entry[1] !== undefined));
    const assignment: SpareAssignment = {args, env};
    spare.child.stdin.end(`${JSON.stringify(assignment)}\n`);
    return {pid: spare.pid, ended: spare.ended};
  }

  /** A taken spare that will not be assigned (its spawn was stopped first): it goes, with its log. */
  discard(taken: Spare): void {
    const spare = taken as SpareProcess;
    killGroup(spare.pid, 'SIGKILL');
    void spare.ended.then(() => this.#removeLog(spare));
  }

  list(): SpareInfo[] {
    return [...this.#spares.values()].map(spare => ({type: spare.type, worker_id: spare.workerId, pid: spare.pid, booted: spare.booted}));
  }

  /** Kills every spare not handed over and waits for them to be gone. */
  async close(): Promise<void> {
    this.#closed = true;
    const spares = [...this.#spares.values()];
    this.#spares.clear();
    for (const spare of spares) {
      killGroup(spare.pid, 'SIGKILL');
    }
    await Promise.all(
      spares.map(async spare => {
        await spare.ended;
        this.#removeLog(spare);
      }),
    );
  }

  /**
   * Spares of this hive (its logs folder in their command line) that a previous hive left alive,
   * other than the workers `adopted`: killed with their process groups. A spare dies when its
   * hive's pipe closes, so these are rare (a spare stopped, or stuck before it could read).
   */
  killStrays(adopted: ReadonlySet<string>): string[] {
    const killed: string[] = [];
    let pids: string[];
    try {
      pids = fs.readdirSync('/proc').filter(name => /^\d+$/.test(name));
    } catch {
      return killed; // no procfs: spares still die with their hive's pipe
    }
    for (const name of pids) {
      const pid = Number(name);
      let argv: string[];
      try {
        argv = fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0');
      } catch {
        continue;
      }
      const at = argv.indexOf('spare');
      const flag = (option: string) => {
        const index = argv.indexOf(option);
        return index < 0 ? undefined : argv[index + 1];
      };
      const id = flag('--worker-id');
      if (at < 1 || argv[at - 1] !== 'worker' || flag('--hive-logs') !== this.#options.logsDir || id === undefined || adopted.has(id)) {
        continue;
      }
      killGroup(pid, 'SIGKILL');
      killed.push(`${id} (pid ${pid})`);
    }
    return killed;
  }

  #start(type: string): void {
    const workerId = `worker-${randomUUID().slice(0, 8)}`;
    const logFile = workerLogFile(this.#options.logsDir, workerId);
    // 0600, as a worker's: once assigned, this is that worker's log.
    const logFd = fs.openSync(logFile, 'a', 0o600);
    let child: ChildProcess;
    try {
      // Detached: its own process group, as a worker started afresh. fd 3: it says when it has booted.
      const args = [rbeeBin, 'worker', 'spare', '--worker-id', workerId, '--type', type, '--hive-logs', this.#options.logsDir, '--booted-fd', '3'];
      if (this.#options.configPath !== null) {
        args.push('--config', this.#options.configPath);
      }
      child = spawn(process.execPath, args, {detached: true, stdio: ['pipe', logFd, logFd, 'pipe'], env: this.#options.env});
    } finally {
      fs.closeSync(logFd);
    }
    const ended = new Promise<ProcessEnd>(resolve => {
      child.once('error', error => resolve({code: null, signal: null, error: error.message}));
      child.once('exit', (code, signal) => resolve({code, signal}));
    });
    if (child.pid === undefined) {
      void ended.then(end => this.#options.log(`spare ${type} worker could not start: ${end.error ?? 'no pid'}`));
      this.#unexpectedExits.set(type, (this.#unexpectedExits.get(type) ?? 0) + 1);
      return;
    }
    const spare: SpareProcess = {type, workerId, pid: child.pid, child, ended, booted: false, exited: false, handedOver: false};
    // A spare that died cannot be written to: that is its end to see, not the hive's error.
    child.stdin?.on('error', () => undefined);
    const booted = child.stdio[3];
    booted?.on('data', () => {
      spare.booted = true;
    });
    booted?.on('error', () => undefined);
    this.#spares.set(type, spare);
    this.#wanted.set(type, null);
    void ended.then(end => {
      spare.exited = true;
      booted?.destroy();
      if (spare.handedOver || this.#closed) {
        return;
      }
      // Died unassigned, on its own: another is started at the next refill, a few times at most.
      this.#spares.delete(type);
      const exits = (this.#unexpectedExits.get(type) ?? 0) + 1;
      this.#unexpectedExits.set(type, exits);
      const how = end.error ?? (end.signal !== null ? `killed by ${end.signal}` : `exited with code ${end.code}`);
      if (exits >= maxUnexpectedExits) {
        this.#wanted.delete(type);
        this.#options.log(`spare ${type} worker ${workerId} ${how} (log: ${logFile}); ${exits} have, so no more spares of that type`);
      } else {
        this.#wanted.set(type, Date.now());
        this.#options.log(`spare ${type} worker ${workerId} ${how} (log: ${logFile})`);
      }
    });
  }

  #removeLog(spare: SpareProcess): void {
    fs.rmSync(workerLogFile(this.#options.logsDir, spare.workerId), {force: true});
  }
}
