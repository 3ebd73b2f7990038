/**
 * Runs the real CLI (bin/rbee.js, built into dist/) as child processes: a hive per test file in
 * its own RBEE_HOME, and one-shot commands against it.
 */
import {type ChildProcess, spawn} from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import {fileURLToPath} from 'node:url';
import {execa, type Result} from 'execa';
import {waitFor} from './process-tree.js';

export const rbeeBin = fileURLToPath(new URL('../../bin/rbee.js', import.meta.url));

export type RunningHive = {
  url: string;
  pid: number;
  home: string;
  child: ChildProcess;
  stderr: () => string;
  stop(signal?: NodeJS.Signals): Promise<number | null>;
};

export function tempHome(prefix = 'rbee-test-'): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), prefix));
}

/** Which Node runs the CLI, and which bin/rbee.js (another Node major, an installed copy): this one's by default. */
export type CliRuntime = {node?: string; bin?: string};

/**
 * Tests run hives with heartbeat intervals of a few hundred ms; at the default 3 missed intervals a
 * worker on a loaded 2-core CI machine (an engine loading beside another test's) could be failed
 * under a test that is not about health. A test that measures hang detection passes its own.
 */
const testMissedHeartbeats = ['--missed-heartbeats', '10'];

export async function startHive(options: {args?: string[]; env?: NodeJS.ProcessEnv; home?: string; cwd?: string} & CliRuntime = {}): Promise<RunningHive> {
  const home = options.home ?? tempHome();
  const args = options.args ?? [];
  const health = args.includes('--missed-heartbeats') ? [] : testMissedHeartbeats;
  const child = spawn(options.node ?? process.execPath, [options.bin ?? rbeeBin, '--json', 'hive', 'start', '--port', '0', ...health, ...args], {
    env: {...process.env, RBEE_HOME: home, ...options.env},
    stdio: ['ignore', 'pipe', 'pipe'],
    ...(options.cwd === undefined ? {} : {cwd: options.cwd}),
  });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', chunk => {
    stdout += String(chunk);
  });
  child.stderr.on('data', chunk => {
    stderr += String(chunk);
  });
  let exited = false;
  const exit = new Promise<number | null>(resolve =>
    child.once('exit', code => {
      exited = true;
      resolve(code);
    }),
  );
  await waitFor(() => exited || stdout.trim().endsWith('}'), 20_000, `hive to start (stderr: ${stderr})`);
  if (exited) {
    throw new Error(`hive exited at start: ${stderr}`);
  }
  const started = JSON.parse(stdout) as {url: string; pid: number};
  return {
    url: started.url,
    pid: started.pid,
    home,
    child,
    stderr: () => stderr,
    async stop(signal: NodeJS.Signals = 'SIGTERM') {
      if (!exited) {
        child.kill(signal);
      }
      return exit;
    },
  };
}

export async function rbee(
  args: string[],
  options: {hive?: RunningHive; env?: NodeJS.ProcessEnv; timeout?: number; cwd?: string} & CliRuntime = {},
): Promise<Result> {
  return execa(options.node ?? process.execPath, [options.bin ?? rbeeBin, ...args], {
    reject: false,
    timeout: options.timeout ?? 120_000,
    ...(options.cwd === undefined ? {} : {cwd: options.cwd}),
    env: {
      ...process.env,
      ...(options.hive === undefined ? {} : {RBEE_HIVE_URL: options.hive.url, RBEE_HOME: options.hive.home}),
      ...options.env,
    },
  });
}

export async function postJson(
  url: string,
  body: unknown,
  init: Omit<RequestInit, 'headers'> & {headers?: Record<string, string>} = {},
): Promise<{status: number; body: any; headers: Headers}> {
  const {headers, ...rest} = init;
  const response = await fetch(url, {
    method: 'POST',
    headers: {'content-type': 'application/json', ...headers},
    body: typeof body === 'string' ? body : JSON.stringify(body),
    signal: AbortSignal.timeout(120_000),
    ...rest,
  });
  const text = await response.text();
  let parsed: unknown = text;
  try {
    parsed = JSON.parse(text);
  } catch {
    // leave as text
  }
  return {status: response.status, body: parsed, headers: response.headers};
}

export async function getJson(url: string, headers: Record<string, string> = {}): Promise<{status: number; body: any}> {
  const response = await fetch(url, {signal: AbortSignal.timeout(30_000), headers});
  return {status: response.status, body: await response.json()};
}

/** SSE `data:` payloads of a streamed POST, in order. */
export async function postStream(url: string, body: unknown, headers: Record<string, string> = {}): Promise<{status: number; events: string[]}> {
  const response = await fetch(url, {
    method: 'POST',
    headers: {'content-type': 'application/json', ...headers},
    body: JSON.stringify(body),
    signal: AbortSignal.timeout(120_000),
  });
  const text = await response.text();
  const events = text
    .split('\n\n')
    .flatMap(block => block.split('\n'))
    .filter(line => line.startsWith('data: '))
    .map(line => line.slice(6));
  return {status: response.status, events};
}

/**
 * What opens a worker's own port: its key, asked of the hive (GET /v1/workers/:id/key), as the
 * header to send. `hiveHeaders`: the hive's own token header, when it has one.
 */
export async function workerAuth(hiveUrl: string, workerId: string, hiveHeaders: Record<string, string> = {}): Promise<Record<string, string>> {
  const answer = await getJson(`${hiveUrl}/v1/workers/${workerId}/key`, hiveHeaders);
  if (answer.status !== 200) {
    throw new Error(`GET /v1/workers/${workerId}/key answered ${answer.status}: ${JSON.stringify(answer.body)}`);
  }
  return {authorization: `Bearer ${(answer.body as {key: string}).key}`};
}

/**
 * POSTs a streamed request and returns once its first token arrived (the stream still open);
 * `rest()` reads it to its end and gives the whole SSE text and when it ended.
 */
export async function streamToFirstToken(
  url: string,
  body: unknown,
  options: {signal?: AbortSignal; headers?: Record<string, string>} = {},
): Promise<{rest: () => Promise<{text: string; endedAt: number}>}> {
  const response = await fetch(url, {
    method: 'POST',
    headers: {'content-type': 'application/json', ...options.headers},
    body: JSON.stringify(body),
    ...(options.signal === undefined ? {} : {signal: options.signal}),
  });
  const reader = response.body!.getReader();
  const decoder = new TextDecoder();
  let text = '';
  while (!text.includes('"type":"token"')) {
    const {value, done} = await reader.read();
    if (done) {
      throw new Error(`stream ended before a token (${response.status}): ${text}`);
    }
    text += decoder.decode(value, {stream: true});
  }
  const rest = async () => {
    for (;;) {
      const {value, done} = await reader.read();
      if (done) {
        return {text, endedAt: Date.now()};
      }
      text += decoder.decode(value, {stream: true});
    }
  };
  return {rest};
}
