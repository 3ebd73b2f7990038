/**
 * The real `rbee dashboard` in a real terminal (tmux), against a real hive with one real worker:
 * the row appears ready, s then y stops it (on screen and in the hive), q quits.
 */
import {execFileSync} from 'node:child_process';
import {randomUUID} from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import test from 'ava';
import {waitFor} from '../helpers/process-tree.js';
import {getJson, postJson, rbeeBin, startHive, type RunningHive} from '../helpers/rbee-process.js';
import {defaultModelPath} from '../helpers/test-model.js';

// Its own tmux server (a socket in a temporary folder) and session: nothing of the user's tmux is
// touched, and all of it goes in the end.
const socketDir = fs.mkdtempSync(path.join(os.tmpdir(), 'rbee-tmux-'));
const socket = path.join(socketDir, 'tmux.sock');
const session = `rbee-dashboard-${randomUUID().slice(0, 8)}`;
const tmux = (...args: string[]) => execFileSync('tmux', ['-S', socket, ...args], {encoding: 'utf8', timeout: 10_000, stdio: ['ignore', 'pipe', 'pipe']});
const capture = () => tmux('capture-pane', '-p', '-t', session);
const shellQuote = (value: string) => `'${value.replace(/'/g, `'\\''`)}'`;

/** Waits for the screen to satisfy `condition`; a timeout shows the last screen. */
async function waitForScreen(condition: (screen: string) => boolean, timeoutMs: number, what: string): Promise<string> {
  try {
    await waitFor(() => condition(capture()), timeoutMs, what);
  } catch (error) {
    throw new Error(`${(error as Error).message}; the screen:\n${capture()}`);
  }
  return capture();
}

let hive: RunningHive | undefined;

test.after.always(async () => {
  try {
    tmux('kill-session', '-t', session);
  } catch {
    // already gone
  }
  try {
    tmux('kill-server');
  } catch {
    // already gone
  }
  fs.rmSync(socketDir, {recursive: true, force: true});
  await hive?.stop();
});

test.serial('rbee dashboard in tmux: a real worker shows ready, s + y stops it, q quits', async t => {
  hive = await startHive({args: ['--heartbeat-interval', '1000']});
  const spawned = await postJson(`${hive.url}/v1/workers`, {model: await defaultModelPath(), threads: 1, parallel: 1, context_size: 512});
  t.is(spawned.status, 201, JSON.stringify(spawned.body));
  const id = spawned.body.worker_id as string;

  // ink draws only a final frame when CI is set; the command clears it itself, and so does this shell line.
  const command = [
    'env',
    '-u',
    'CI',
    `RBEE_HIVE_URL=${hive.url}`,
    `RBEE_HOME=${hive.home}`,
    shellQuote(process.execPath),
    shellQuote(rbeeBin),
    'dashboard',
  ].join(' ');
  tmux('new-session', '-d', '-s', session, '-x', '160', '-y', '40', `${command}; echo "[dashboard exited $?]"; sleep 600`);

  const rowOf = (screen: string) => screen.split('\n').find(line => line.includes(id)) ?? '';
  let screen = await waitForScreen(current => /\bready\b/.test(rowOf(current)), 120_000, 'the worker row to show ready');
  t.regex(screen, /rbee dashboard {2}http:\/\/127\.0\.0\.1:\d+ .*● live/);
  t.regex(rowOf(screen), /llamacpp +gemma-3-270m-q4_k_m +cpu +ready/);

  // Select it (the only worker: down and up land on it), then stop it.
  tmux('send-keys', '-t', session, 'Down');
  tmux('send-keys', '-t', session, 'k');
  await waitForScreen(current => rowOf(current).startsWith('› '), 10_000, 'the worker selected');
  tmux('send-keys', '-t', session, 's');
  await waitForScreen(current => current.includes(`Stop ${id} (gemma-3-270m-q4_k_m on cpu)? y/n`), 10_000, 'the y/n question');
  tmux('send-keys', '-t', session, 'y');
  await waitForScreen(current => /\b(stopping|stopped)\b/.test(rowOf(current)), 30_000, 'the row to show stopping or stopped');
  await waitFor(async () => (await getJson(`${hive!.url}/v1/workers/${id}`)).body.state === 'stopped', 60_000, 'the hive to report it stopped');
  await waitForScreen(current => /\bstopped\b/.test(rowOf(current)), 10_000, 'the row to show stopped');
  screen = capture();
  t.regex(screen, new RegExp(`${id} stopped`), 'the notice of the finished stop');
  const listed = await getJson(`${hive.url}/v1/workers?all=1`);
  t.is(listed.body.workers.find((worker: {worker_id: string}) => worker.worker_id === id)?.state, 'stopped');

  tmux('send-keys', '-t', session, 'q');
  await waitForScreen(current => current.includes('[dashboard exited 0]'), 10_000, 'the dashboard to exit');
  t.pass();
});
