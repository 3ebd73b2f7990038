/**
 * A real hive as a child process: `node bin/rbee.js --json hive start --port 0 ...` in a throwaway
 * RBEE_HOME, loopback only. Stopping it sends SIGTERM (the hive stops its workers first); if it
 * has not exited in time it is SIGKILLed and the worker process groups it reported go with it.
 */
import {spawn, type ChildProcess} from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import {fileURLToPath} from 'node:url';
import {HiveClient} from '../../src/protocol/hive-client.js';
import {onCleanup} from './cleanup.js';

export const repoRoot = fileURLToPath(new URL('../../', import.meta.url));
export const rbeeBin = path.join(repoRoot, 'bin', 'rbee.js');

export type HiveProcess = {
  url: string;
  /** The typed client of its HTTP API (the one the CLI and the dashboard use). */
  client: HiveClient;
  pid: number;
  home: string;
  child: ChildProcess;
  stderr: () => string;
  /** Worker pids to SIGKILL (by process group) should the hive itself need a SIGKILL. */
  trackWorker(pid: number | null | undefined): void;
  /** SIGTERM, wait for the exit; resolves with how long the hive took to exit, in ms. */
  stop(): Promise<number>;
};

/** The environment without RBEE_* settings of whoever runs the benchmark, so every run is alike. */
function cleanEnv(home: string): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [key, value] of Object.entries(process.env)) {
    if (!key.startsWith('RBEE_')) {
      env[key] = value;
    }
  }
  env.RBEE_HOME = home;
  return env;
}

function groupAlive(pid: number): boolean {
  try {
    process.kill(-pid, 0);
    return true;
  } catch {
    return false;
  }
}

export async function startHiveProcess(
  options: {args?: string[]; env?: Record<string, string>; startTimeoutMs?: number; stopTimeoutMs?: number} = {},
): Promise<HiveProcess> {
  const home = fs.mkdtempSync(path.join(os.tmpdir(), 'rbee-bench-'));
  // cwd is the empty home, so no rbee.config.* of the checkout (or above it) changes the hive.
  const child = spawn(process.execPath, [rbeeBin, '--json', 'hive', 'start', '--host', '127.0.0.1', '--port', '0', ...(options.args ?? [])], {
    cwd: home,
    env: {...cleanEnv(home), ...options.env},
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  // The last ~4 M characters of stderr (a traced run writes a line per request step), kept as chunks: no copy per write.
  const stderrChunks: string[] = [];
  let stderrBytes = 0;
  child.stdout.on('data', chunk => {
    stdout += String(chunk);
  });
  child.stderr.on('data', chunk => {
    const text = String(chunk);
    stderrChunks.push(text);
    stderrBytes += text.length;
    while (stderrBytes > 4 * 1_048_576 && stderrChunks.length > 1) {
      stderrBytes -= stderrChunks.shift()!.length;
    }
  });
  const stderr = () => stderrChunks.join('');
  let exited = false;
  const exit = new Promise<void>(resolve =>
    child.once('exit', () => {
      exited = true;
      resolve();
    }),
  );
  const workers = new Set<number>();

  const killEverything = () => {
    if (!exited) {
      child.kill('SIGKILL');
    }
    for (const pid of workers) {
      try {
        process.kill(-pid, 'SIGKILL');
      } catch {
        // already gone
      }
    }
  };

  let stopped: Promise<number> | null = null;
  const stop = (): Promise<number> => {
    stopped ??= (async () => {
      const began = performance.now();
      if (!exited) {
        child.kill('SIGTERM');
      }
      const timeoutMs = options.stopTimeoutMs ?? 30_000;
      let timer: NodeJS.Timeout | undefined;
      const timedOut = await Promise.race([
        exit.then(() => false),
        new Promise<boolean>(resolve => {
          timer = setTimeout(() => resolve(true), timeoutMs);
        }),
      ]);
      clearTimeout(timer);
      const took = performance.now() - began;
      if (timedOut) {
        process.stderr.write(`[bench] hive ${child.pid} did not exit ${timeoutMs} ms after SIGTERM: SIGKILL\n`);
        killEverything();
        await exit;
      }
      // The hive stops its workers before it exits; any group still alive here is a leak.
      const leaked = [...workers].filter(groupAlive);
      if (leaked.length > 0) {
        process.stderr.write(`[bench] worker process groups alive after the hive exited: ${leaked.join(', ')}: SIGKILL\n`);
        killEverything();
      }
      unregister();
      fs.rmSync(home, {recursive: true, force: true});
      return took;
    })();
    return stopped;
  };
  const unregister = onCleanup(`hive ${child.pid}`, async () => {
    await stop();
  });

  const startTimeoutMs = options.startTimeoutMs ?? 30_000;
  const deadline = performance.now() + startTimeoutMs;
  let started: {url: string; pid: number} | null = null;
  while (started === null) {
    if (exited) {
      unregister();
      throw new Error(`the hive exited at start: ${stderr()}`);
    }
    if (performance.now() > deadline) {
      await stop();
      throw new Error(`the hive did not start within ${startTimeoutMs} ms: ${stderr()}`);
    }
    try {
      started = JSON.parse(stdout) as {url: string; pid: number};
    } catch {
      await new Promise(resolve => setTimeout(resolve, 20));
    }
  }
  if (!/^http:\/\/127\.0\.0\.1:\d+$/.test(started.url)) {
    await stop();
    throw new Error(`the hive is not on loopback: ${started.url}`);
  }

  return {
    url: started.url,
    client: new HiveClient({url: started.url}),
    pid: started.pid,
    home,
    child,
    stderr,
    trackWorker(pid) {
      if (typeof pid === 'number' && pid > 0) {
        workers.add(pid);
      }
    },
    stop,
  };
}

/**
 * Waits until the hive has its spare worker processes booted (src/hive/spare-workers.ts): a hive
 * left alone between two measurements has them, and their boot must not run during the other
 * side's measurement. `expected`: how many spares the hive keeps by then (0 waits for nothing).
 */
export async function hiveSettled(hive: HiveProcess, expected: number, timeoutMs = 60_000): Promise<void> {
  const deadline = performance.now() + timeoutMs;
  for (;;) {
    const spares = (await hive.client.status()).spares ?? [];
    if (spares.length >= expected && spares.every(spare => spare.booted)) {
      return;
    }
    if (performance.now() > deadline) {
      throw new Error(`the hive's spare workers did not boot in ${timeoutMs} ms: ${JSON.stringify(spares)}`);
    }
    await new Promise(resolve => setTimeout(resolve, 50));
  }
}
