// Issue 11's last two rows on one NVIDIA GPU: time to first token for a 512-token prompt, and the
// GPU memory a model takes at context 8192 — the candle engine's graph path against llama-server
// (llama.cpp's CUDA build), same GGUF, same prompts, each side alone on the GPU. Plain JS on the
// napi binding, no dependencies (runs from the unpacked files of bench/gpu/issue11-on-gpu.sh).
//
//   node ttft-vram.mjs <napi loader (native/index.js)> <model.gguf> <out.json> --llama-server <dir>
//        [--ctx 8192] [--prompt 512] [--rounds 9]
//
// TTFT: one request of --prompt random token ids answered with one token (greedy), timed from
// the call to the answer: candle's `generate` in its own process (no HTTP), llama-server's
// POST /completion over loopback HTTP (n_predict 1, cache_prompt false: no prefix reuse), a new
// prompt each round (the same prompts on both sides), two warm-up rounds first; medians.
// Memory: the driver's figures once the warm-up rounds are done (every buffer and cuBLAS's
// workspace allocated), read while the side is idle so that nvidia-smi never runs during a timed
// round: the process's own (nvidia-smi --query-compute-apps) where the driver lists it, and the
// whole GPU's memory.used less what it was before the side started (the same number when nothing
// else runs on the GPU).
import {execFileSync, spawn} from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import {fileURLToPath, pathToFileURL} from 'node:url';
import {startLlamaServer} from './llama-server.mjs';

const [loaderPath, modelPath, outPath, ...rest] = process.argv.slice(2);
const flag = (name, fallback) => {
  const i = rest.indexOf(name);
  return i >= 0 ? rest[i + 1] : fallback;
};
if (!loaderPath || !modelPath || !outPath) {
  console.error('usage: node ttft-vram.mjs <native/index.js> <model.gguf> <out.json> --llama-server <dir> [--ctx 8192] [--prompt 512] [--rounds 9]');
  process.exit(2);
}
const ctx = Number(flag('--ctx', 8192));
const promptTokens = Number(flag('--prompt', 512));
const rounds = Number(flag('--rounds', 9));
const warmup = 2;
const llamaDir = flag('--llama-server', '');
const side = flag('--side', 'both');
// Only for trying the script without a GPU (--device cpu --forward ggml, a stand-in nvidia-smi).
const device = flag('--device', 'cuda:0');
const forward = flag('--forward', 'graph');
const log = (...a) => console.log('[ttft-vram]', ...a);

const median = xs => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};
// Token ids 1000..31999: inside every vocabulary this runs on, the same on both sides.
const prompts = () =>
  Array.from({length: warmup + rounds}, (_, r) => Array.from({length: promptTokens}, (_, i) => 1000 + ((i * 7919 + (r + 1) * 104729) % 31000)));

function smi(args) {
  return execFileSync('nvidia-smi', args, {encoding: 'utf8'}).trim();
}
const gpuUsedMiB = () => Number(smi(['--query-gpu=memory.used', '--format=csv,noheader,nounits', '-i', '0']).split('\n')[0]);
function processMiB(pid) {
  const rows = smi(['--query-compute-apps=pid,used_memory', '--format=csv,noheader,nounits']).split('\n');
  const row = rows.map(r => r.split(',').map(s => s.trim())).find(([p]) => Number(p) === pid);
  return row ? Number(row[1]) : null;
}

// The candle side, in a child process of its own (its CUDA context alone on the GPU).
async function candleSide() {
  const binding = await import(pathToFileURL(path.resolve(loaderPath)).href);
  const model = await binding.Model.load({path: modelPath, device, contextSize: ctx, forward, parallel: 1});
  if (!(model instanceof binding.Model)) throw new Error(`load: ${model.code}: ${model.message}`);
  const info = model.info;
  const generate = tokens =>
    new Promise((resolve, reject) => {
      const t = performance.now();
      const started = model.generate({tokens, maxTokens: 1, temperature: 0}, event => {
        if (event.kind === 'done') resolve({ms: performance.now() - t, result: event.result});
        else if (event.kind === 'error') reject(new Error(`${event.error.code}: ${event.error.message}`));
      });
      if (started && started.code) reject(new Error(`${started.code}: ${started.message}`));
    });
  const ms = [];
  for (const [round, tokens] of prompts().entries()) {
    if (round === warmup) await steady();
    ms.push((await generate(tokens)).ms);
  }
  const record = {
    forward: info.forward,
    contextSize: info.contextSize,
    weightBytes: info.weightBytes,
    kvCacheBytes: info.kvCacheBytes,
    ttftMs: ms.slice(warmup),
    engineMemory: model.memory(),
  };
  model.close();
  return record;
}

// The candle child tells its parent it is warm and idle, and waits for the parent's memory reading.
async function steady() {
  process.stdout.write('steady\n');
  await new Promise(resolve => process.stdin.once('data', resolve));
}

async function llamaSide() {
  const server = await startLlamaServer(llamaDir, ['-m', modelPath, '-c', String(ctx), '-np', '1', '-ngl', '999'], 18300 + (process.pid % 500));
  const {url} = server;
  try {
    const ms = [];
    let memory = null;
    for (const [round, tokens] of prompts().entries()) {
      if (round === warmup) memory = readMemory(server.pid);
      const t = performance.now();
      const response = await fetch(`${url}/completion`, {
        method: 'POST',
        headers: {'content-type': 'application/json'},
        body: JSON.stringify({prompt: tokens, n_predict: 1, temperature: 0, cache_prompt: false}),
      });
      if (!response.ok) throw new Error(`llama-server ${response.status}: ${await response.text()}`);
      const body = await response.json();
      ms.push(performance.now() - t);
      if ((body.tokens_evaluated ?? promptTokens) < promptTokens) throw new Error(`llama-server evaluated ${body.tokens_evaluated} prompt tokens`);
    }
    return {args: server.args, ttftMs: ms.slice(warmup), ...memory};
  } finally {
    await server.stop();
  }
}

let gpuBeforeMiB = 0;
function readMemory(pid) {
  const used = gpuUsedMiB();
  return {processMiB: processMiB(pid), gpuUsedMiB: used, gpuDeltaMiB: used - gpuBeforeMiB};
}

if (side === 'candle') {
  // Child mode: one JSON line on stdout.
  const record = await candleSide();
  process.stdout.write(`${JSON.stringify(record)}\n`);
  process.exit(0);
}

const summary = {
  model: path.basename(modelPath),
  modelBytes: fs.statSync(modelPath).size,
  ctx,
  promptTokens,
  rounds,
  warmup,
  gpu: smi(['--query-gpu=name,memory.total,driver_version', '--format=csv,noheader']),
  errors: [],
};
try {
  gpuBeforeMiB = gpuUsedMiB();
  const child = spawn(
    process.execPath,
    [
      fileURLToPath(import.meta.url),
      loaderPath,
      modelPath,
      outPath,
      '--side',
      'candle',
      '--device',
      device,
      '--forward',
      forward,
      '--ctx',
      String(ctx),
      '--prompt',
      String(promptTokens),
      '--rounds',
      String(rounds),
    ],
    {stdio: ['pipe', 'pipe', 'inherit']},
  );
  let out = '';
  let memory = null;
  child.stdout.on('data', d => {
    out += d;
    if (memory === null && out.includes('steady\n')) {
      memory = readMemory(child.pid);
      child.stdin.write('go\n');
    }
  });
  const code = await new Promise(resolve => child.once('exit', resolve));
  if (code !== 0) throw new Error(`candle side exited ${code}: ${out.slice(-400)}`);
  summary.candle = {...JSON.parse(out.trim().split('\n').pop()), ...memory};
} catch (error) {
  summary.errors.push({candle: String(error.message)});
  log(`candle: FAILED: ${error.message}`);
}
if (llamaDir) {
  try {
    gpuBeforeMiB = gpuUsedMiB();
    summary.llamaServer = await llamaSide();
  } catch (error) {
    summary.errors.push({llamaServer: String(error.message)});
    log(`llama-server: FAILED: ${error.message}`);
  }
}
for (const [name, r] of [
  ['candle', summary.candle],
  ['llama-server', summary.llamaServer],
]) {
  if (!r) continue;
  r.ttftMedianMs = median(r.ttftMs);
  log(
    `${name}: TTFT median ${r.ttftMedianMs.toFixed(2)} ms over ${r.ttftMs.length} (${r.ttftMs.map(x => x.toFixed(1)).join(', ')}); memory: process ${r.processMiB ?? 'n/a'} MiB, GPU memory.used +${r.gpuDeltaMiB} MiB`,
  );
}
if (summary.candle && summary.llamaServer) {
  summary.ratios = {
    ttft: summary.candle.ttftMedianMs / summary.llamaServer.ttftMedianMs,
    memoryGpuDelta: summary.candle.gpuDeltaMiB / summary.llamaServer.gpuDeltaMiB,
    memoryProcess: summary.candle.processMiB && summary.llamaServer.processMiB ? summary.candle.processMiB / summary.llamaServer.processMiB : null,
  };
  log(
    `candle / llama-server: TTFT ${summary.ratios.ttft.toFixed(3)}x, GPU memory ${summary.ratios.memoryGpuDelta.toFixed(3)}x (memory.used delta)${summary.ratios.memoryProcess ? `, ${summary.ratios.memoryProcess.toFixed(3)}x (per process)` : ''}`,
  );
}
fs.writeFileSync(outPath, JSON.stringify(summary, null, 1));
log(`wrote ${outPath}`);
