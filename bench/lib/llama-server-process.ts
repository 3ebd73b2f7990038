/**
 * llama.cpp's own llama-server as a bench peer: started with a given argument list on a free
 * loopback port, in its own process group (SIGTERM, then SIGKILL of the group; registered with
 * lib/cleanup.ts so no exit path leaves it behind). Also the /proc helpers to find the
 * llama-server a worker runs and read its exact command line, /metrics scraping, and the
 * machine-wide CPU time that tells a clean batch from one another process disturbed.
 */
import {execFileSync, spawn, spawnSync} from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import {onCleanup} from './cleanup.js';

export type LlamaServerProcess = {
  pid: number;
  url: string;
  port: number;
  argv: string[];
  /** ms from spawn to the first `GET /health` answered 200. */
  readyMs: number;
  output: () => string;
  /** SIGTERM to the group, SIGKILL after `graceMs`; resolves with ms until the process exited. */
  stop(graceMs?: number): Promise<number>;
};

export async function freeLoopbackPort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.unref();
    server.on('error', reject);
    server.listen({host: '127.0.0.1', port: 0}, () => {
      const address = server.address();
      server.close(() => (address === null || typeof address === 'string' ? reject(new Error('no port')) : resolve(address.port)));
    });
  });
}

/** `llama-server --version`: llama.cpp prints its build to stderr. */
export function llamaServerVersion(serverPath: string): string {
  const answer = spawnSync(serverPath, ['--version'], {stdio: ['ignore', 'pipe', 'pipe'], timeout: 10_000, encoding: 'utf8'});
  const text = `${answer.stdout ?? ''}${answer.stderr ?? ''}`.trim();
  return text === '' ? `unknown (${answer.error?.message ?? `exit ${answer.status}`})` : text;
}

export function cmdline(pid: number): string[] {
  return fs
    .readFileSync(`/proc/${pid}/cmdline`, 'utf8')
    .split('\0')
    .filter(part => part !== '');
}

/** Direct children of `pid`, from /proc/<n>/stat (Linux only). */
export function childPids(pid: number): number[] {
  const children: number[] = [];
  for (const entry of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) {
      continue;
    }
    try {
      const stat = fs.readFileSync(`/proc/${entry}/stat`, 'utf8');
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      if (Number(fields[1]) === pid) {
        children.push(Number(entry));
      }
    } catch {
      // gone meanwhile
    }
  }
  return children;
}

/** The value after `flag` in an argument list, or undefined. */
export function argValue(argv: readonly string[], flag: string): string | undefined {
  const index = argv.indexOf(flag);
  return index === -1 ? undefined : argv[index + 1];
}

/** A copy of `argv` with the value after `flag` replaced. */
export function withArg(argv: readonly string[], flag: string, value: string): string[] {
  const index = argv.indexOf(flag);
  if (index === -1 || index + 1 >= argv.length) {
    throw new Error(`${flag} is not in ${argv.join(' ')}`);
  }
  return argv.map((part, position) => (position === index + 1 ? value : part));
}

function groupAlive(pid: number): boolean {
  try {
    process.kill(-pid, 0);
    return true;
  } catch {
    return false;
  }
}

/**
 * Starts `serverPath args...` (args must carry `--port <port>` and `--host 127.0.0.1`) in its own
 * process group and waits for /health to answer 200.
 */
export async function startLlamaServer(serverPath: string, args: string[], options: {startTimeoutMs?: number} = {}): Promise<LlamaServerProcess> {
  const host = argValue(args, '--host');
  const port = Number(argValue(args, '--port'));
  if (host !== '127.0.0.1' || !Number.isInteger(port) || port <= 0) {
    throw new Error(`a bench llama-server must be on 127.0.0.1 with an explicit port: ${args.join(' ')}`);
  }
  const began = performance.now();
  const child = spawn(serverPath, args, {detached: true, stdio: ['ignore', 'pipe', 'pipe']});
  let output = '';
  const keep = (chunk: Buffer) => {
    output = (output + chunk.toString('utf8')).slice(-32_768);
  };
  child.stdout.on('data', keep);
  child.stderr.on('data', keep);
  let exited = false;
  const exit = new Promise<void>(resolve => {
    child.once('error', error => {
      output += `\ncould not start ${serverPath}: ${error.message}`;
      exited = true;
      resolve();
    });
    child.once('exit', () => {
      exited = true;
      resolve();
    });
  });
  const pid = child.pid ?? -1;

  let stopping: Promise<number> | null = null;
  const stop = (graceMs = 10_000): Promise<number> => {
    stopping ??= (async () => {
      const from = performance.now();
      if (!exited && pid > 0) {
        try {
          process.kill(-pid, 'SIGTERM');
        } catch {
          // already gone
        }
      }
      let timer: NodeJS.Timeout | undefined;
      const timedOut = await Promise.race([
        exit.then(() => false),
        new Promise<boolean>(resolve => {
          timer = setTimeout(() => resolve(true), graceMs);
        }),
      ]);
      clearTimeout(timer);
      const took = performance.now() - from;
      if (pid > 0 && (timedOut || groupAlive(pid))) {
        if (timedOut) {
          process.stderr.write(`[bench] llama-server ${pid} did not exit ${graceMs} ms after SIGTERM: SIGKILL\n`);
        }
        try {
          process.kill(-pid, 'SIGKILL');
        } catch {
          // already gone
        }
        await exit;
      }
      unregister();
      return took;
    })();
    return stopping;
  };
  const unregister = onCleanup(`llama-server ${pid}`, async () => {
    await stop(5_000);
  });

  const url = `http://127.0.0.1:${port}`;
  const deadline = began + (options.startTimeoutMs ?? 120_000);
  for (;;) {
    if (exited) {
      unregister();
      throw new Error(`llama-server exited at start: ${output.split('\n').slice(-8).join('\n')}`);
    }
    if (performance.now() > deadline) {
      await stop(2_000);
      throw new Error(`llama-server did not become healthy in time: ${output.split('\n').slice(-8).join('\n')}`);
    }
    try {
      const response = await fetch(`${url}/health`, {signal: AbortSignal.timeout(2_000)});
      await response.arrayBuffer();
      if (response.ok) {
        break;
      }
    } catch {
      // not listening yet
    }
    await new Promise(resolve => setTimeout(resolve, 20));
  }
  return {pid, url, port, argv: [serverPath, ...args], readyMs: performance.now() - began, output: () => output, stop};
}

/**
 * Unlabelled samples of a Prometheus text page (llama-server's /metrics has no labels). `apiKey`: the
 * key a worker's llama-server was started with (LLAMA_API_KEY); none for one started bare.
 */
export async function scrapeMetrics(url: string, apiKey?: string): Promise<Record<string, number>> {
  const response = await fetch(`${url}/metrics`, {
    signal: AbortSignal.timeout(5_000),
    ...(apiKey === undefined ? {} : {headers: {authorization: `Bearer ${apiKey}`}}),
  });
  const text = await response.text();
  if (!response.ok) {
    throw new Error(`GET ${url}/metrics answered ${response.status}: ${text.slice(0, 200)}`);
  }
  const samples: Record<string, number> = {};
  for (const line of text.split('\n')) {
    const match = /^([a-zA-Z_:][a-zA-Z0-9_:]*) (\S+)$/.exec(line.trim());
    if (match !== null) {
      samples[match[1]!] = Number(match[2]);
    }
  }
  return samples;
}

/**
 * CPU time of the whole machine, in seconds, from /proc/stat: `busy` is what this VM's processes
 * and kernel ran (user, nice, system, irq, softirq), `steal` what the hypervisor gave to others.
 */
export function machineCpuSeconds(): {busy: number; steal: number} {
  const line = fs.readFileSync('/proc/stat', 'utf8').split('\n')[0] ?? '';
  // cpu user nice system idle iowait irq softirq steal guest guest_nice (guest is counted in user)
  const [user = 0, nice = 0, system = 0, _idle = 0, _iowait = 0, irq = 0, softirq = 0, steal = 0] = line.trim().split(/\s+/).slice(1).map(Number);
  return {busy: (user + nice + system + irq + softirq) / clockTicks(), steal: steal / clockTicks()};
}

let ticks: number | null = null;
function clockTicks(): number {
  if (ticks === null) {
    try {
      ticks =
        Number(
          execFileSync('getconf', ['CLK_TCK'], {stdio: ['ignore', 'pipe', 'ignore'], timeout: 5_000})
            .toString()
            .trim(),
        ) || 100;
    } catch {
      ticks = 100;
    }
  }
  return ticks;
}
