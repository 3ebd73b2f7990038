/**
 * `rbee hive start --detach`: the same `hive start` in a process of its own session, its output
 * appended to RBEE_HOME/logs/hive.log (0600). Returns once the hive answers at the URL its record in
 * the home names (hive.json, written under the home's lock), or fails with the hive's own error (its
 * last `rbee: … [code]` line) if it exits first.
 */
import {spawn} from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import {fileURLToPath} from 'node:url';
import {RbeeError, type ErrorCode} from '../errors.js';
import {ensurePrivateDir} from '../config/private-home.js';
import {readHomeOwner} from '../hive/home-owner.js';
import {HiveClient} from '../protocol/hive-client.js';

export type DetachedHive = {pid: number; url: string; log: string};

const cliMain = fileURLToPath(new URL('./main.js', import.meta.url));

export function hiveLogPath(home: string): string {
  return path.join(home, 'logs', 'hive.log');
}

/** The hive's own failure, as its CLI printed it (`rbee: <message> [<code>]`), from what it wrote to the log. */
function failureFrom(output: string, exit: string): RbeeError {
  const lines = output.split('\n').filter(line => line.trim() !== '');
  const reported = lines
    .reverse()
    .map(line => /^rbee: (.*) \[([a-z_]+)\]$/.exec(line))
    .find(match => match !== null);
  if (reported !== undefined && reported !== null) {
    return new RbeeError(reported[2] as ErrorCode, `the hive did not start: ${reported[1]}`);
  }
  return new RbeeError('internal', `the hive exited (${exit}) before it answered: ${lines[0] ?? 'no output'}`);
}

async function answers(url: string): Promise<boolean> {
  try {
    await new HiveClient({url, timeoutMs: 2_000}).health();
    return true;
  } catch {
    return false;
  }
}

/** `args` without `name`'s values (`--name value` and `--name=value`). */
export function withoutOption(args: readonly string[], name: string): string[] {
  const kept: string[] = [];
  for (let index = 0; index < args.length; index++) {
    if (args[index] === name) {
      index++;
    } else if (!args[index]!.startsWith(`${name}=`)) {
      kept.push(args[index]!);
    }
  }
  return kept;
}

/**
 * Starts `rbee <args>` (a `hive start` command line without --detach) detached and waits (at most
 * `timeoutMs`) until it serves. `env` is added to the hive's environment (secrets go there, not in args).
 */
export async function startDetachedHive(options: {home: string; args: string[]; timeoutMs: number; env?: Record<string, string>}): Promise<DetachedHive> {
  const log = hiveLogPath(options.home);
  ensurePrivateDir(options.home);
  ensurePrivateDir(path.dirname(log), "the hive's log folder");
  const fd = fs.openSync(log, 'a', 0o600);
  const offset = fs.fstatSync(fd).size;
  let exit: string | null = null;
  let child;
  try {
    // detached: setsid(), so the hive outlives this terminal and its signals; an argument array, never a shell.
    child = spawn(process.execPath, [cliMain, ...options.args], {
      detached: true,
      stdio: ['ignore', fd, fd],
      env: {...process.env, ...options.env, RBEE_HOME: options.home},
    });
  } finally {
    fs.closeSync(fd);
  }
  child.once('exit', (code, signal) => {
    exit = signal === null ? `exit code ${code}` : signal;
  });
  child.once('error', error => {
    exit = error.message;
  });
  child.unref();
  const pid = child.pid ?? -1;
  const deadline = Date.now() + options.timeoutMs;
  const written = () => {
    const text = fs.readFileSync(log, 'utf8');
    return text.slice(Math.min(offset, text.length));
  };
  while (Date.now() < deadline) {
    if (exit !== null) {
      throw failureFrom(written(), exit);
    }
    const entry = readHomeOwner(options.home);
    if (entry?.pid === pid && entry.url !== null && (await answers(entry.url))) {
      return {pid, url: entry.url, log};
    }
    await new Promise(resolve => setTimeout(resolve, 100));
  }
  child.kill('SIGTERM');
  throw new RbeeError('timeout', `the hive (pid ${pid}) did not answer within ${options.timeoutMs / 1000} s; it was stopped. Its log: ${log}`);
}
