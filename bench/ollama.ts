/**
 * The ollama adapter against Ollama on its own (the real `ollama`, `rbee engines install ollama`).
 *
 * (1) spawn → ready: through the hive (POST /v1/workers --type ollama, until its event says ready: the
 *     worker starts, `ollama serve` answers, the GGUF is imported, the model is loaded) against the
 *     same done by hand (`ollama serve` started, /api/version polled, `ollama create`, a prompt-less
 *     /api/generate that loads the model). Rounds alternate. Goal: hive / by hand ≤ 1.2.
 * (2) tokens/s: one worker; streamed greedy generations of `--tokens` tokens, alternating through
 *     the hive (POST /v1/infer, stream) and straight to that worker's own `ollama serve`
 *     (/api/generate, raw, the same options). Decode tok/s = (tokens - 1) / (t_last - t_first).
 *     Goal: hive / straight ≥ 0.97.
 *
 * Each spawn round records the 1-minute load average: the machine is shared, and both sides slow
 * down with it. `--spawn-only` skips (2). The hive keeps a spare worker process per type in use
 * (hive.spareWorkers): each side starts once it has booted, so its boot runs during neither side;
 * `--no-spares` turns them off. Each hive spawn's timeline (RBEE_STARTUP_TRACE marks) is kept.
 *
 *   npx tsx bench/ollama.ts [--rounds 3] [--tokens 64] [--threads 2] [--spawn-only] [--no-spares] [--out bench/results]
 */
import {spawn} from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import {parseArgs} from 'node:util';
import {findOllama} from '../src/engines/ollama-build.js';
import {resolveModel} from '../src/models/resolve-model.js';
import {hiveSettled, startHiveProcess} from './lib/hive-process.js';
import {epochNow, medianTimeline, startTimeline, timelineRows, type TimelineStep} from './lib/startup-timeline.js';
import {renderMarkdown, renderText, type Table} from './lib/table.js';
import type {WorkerInfo} from '../src/protocol/wire.js';
import {pollUntil, streamInfer} from './lib/http.js';
import {localDate, machineInfo, modelInfo} from './lib/machine.js';
import {median, ratio, round} from './lib/stats.js';

const {values: flags} = parseArgs({
  options: {
    rounds: {type: 'string', default: '3'},
    tokens: {type: 'string', default: '64'},
    threads: {type: 'string', default: '2'},
    'spawn-only': {type: 'boolean', default: false},
    'no-spares': {type: 'boolean', default: false},
    out: {type: 'string'},
  },
});
const rounds = Number(flags.rounds);
const tokens = Number(flags.tokens);
const threads = Number(flags.threads);
const contextSize = 1024;
const prompt = 'Once upon a time, in a small village by the sea,';
const log = (line: string) => process.stderr.write(`${line}\n`);
const load1 = () => round(os.loadavg()[0]!, 2);
const loadBefore = os.loadavg().map(value => round(value, 2));

const installed = findOllama();
if (installed === null) {
  throw new Error('no ollama: run `rbee engines install ollama` first');
}
const ollama = installed.binary;
const modelsDir = path.join(os.homedir(), '.cache', 'rbee', 'models');
const model = await resolveModel('default', {modelsDir});

async function freePort(): Promise<number> {
  const net = await import('node:net');
  return new Promise(resolve => {
    const server = net.createServer().listen(0, '127.0.0.1', () => {
      const {port} = server.address() as {port: number};
      server.close(() => resolve(port));
    });
  });
}

async function ok(url: string, body?: unknown): Promise<unknown> {
  const response = await fetch(url, {
    method: body === undefined ? 'GET' : 'POST',
    ...(body === undefined ? {} : {body: JSON.stringify(body), headers: {'content-type': 'application/json'}}),
    signal: AbortSignal.timeout(600_000),
  });
  if (!response.ok) {
    throw new Error(`${url} answered ${response.status}: ${await response.text()}`);
  }
  return response.json();
}

const handTimelines: TimelineStep[][] = [];

/** `ollama serve` → /api/version → `ollama create` → model loaded, by hand: the milliseconds it took. */
async function byHand(): Promise<number> {
  const port = await freePort();
  const store = fs.mkdtempSync(path.join(os.tmpdir(), 'rbee-bench-ollama-'));
  const env = {...process.env, OLLAMA_HOST: `127.0.0.1:${port}`, OLLAMA_MODELS: store, OLLAMA_CONTEXT_LENGTH: String(contextSize), CUDA_VISIBLE_DEVICES: ''};
  const started = performance.now();
  const serve = spawn(ollama, ['serve'], {env, stdio: 'ignore', detached: true});
  const mark = (step: string) => ({step, ms: Math.round(performance.now() - started)});
  const timeline: TimelineStep[] = [mark('by hand: ollama serve spawned')];
  try {
    await pollUntil(
      'ollama serve to answer',
      async () => ((await fetch(`http://127.0.0.1:${port}/api/version`).catch(() => null))?.ok === true ? true : undefined),
      60_000,
    );
    timeline.push(mark('by hand: /api/version answered'));
    const modelfile = path.join(store, 'Modelfile');
    fs.writeFileSync(modelfile, `FROM ${model.path}\nPARAMETER num_ctx ${contextSize}\n`);
    await new Promise<void>((resolve, reject) => {
      const create = spawn(ollama, ['create', 'bench', '-f', modelfile], {env, stdio: 'ignore'});
      create.once('exit', code => (code === 0 ? resolve() : reject(new Error(`ollama create exited ${code}`))));
    });
    timeline.push(mark('by hand: ollama create done'));
    await ok(`http://127.0.0.1:${port}/api/generate`, {model: 'bench'});
    timeline.push(mark('by hand: model loaded'));
    handTimelines.push(timeline);
    return performance.now() - started;
  } finally {
    process.kill(-serve.pid!, 'SIGKILL');
    await new Promise(resolve => setTimeout(resolve, 200));
    fs.rmSync(store, {recursive: true, force: true});
  }
}

const spareWorkers = !flags['no-spares'];
const configDir = fs.mkdtempSync(path.join(os.tmpdir(), 'rbee-bench-ollama-config-'));
const configFile = path.join(configDir, 'rbee.config.json');
fs.writeFileSync(configFile, `${JSON.stringify({hive: {spareWorkers}})}\n`, {mode: 0o600});
const hive = await startHiveProcess({args: ['--config', configFile, '--heartbeat-interval', '1000'], env: {RBEE_STARTUP_TRACE: '1'}});
/** Spares the hive keeps once it has spawned an ollama worker. */
let sparesExpected = 0;
const timelines: TimelineStep[][] = [];
try {
  /**
   * Spawn → ready, seen on the hive's event stream (GET /v1/events, opened first): no poll of the
   * hive runs while the engine starts, as none runs beside Ollama by hand once it answers.
   */
  async function throughHive(): Promise<{ms: number; id: string; pid: number}> {
    const stop = new AbortController();
    const deadline = setTimeout(() => stop.abort(), 300_000);
    const events = hive.client.events({signal: stop.signal});
    try {
      await events.next(); // the snapshot: the stream is open
      const began = epochNow();
      const started = performance.now();
      const spawned = await hive.client.spawnWorker({
        model: model.path,
        type: 'ollama',
        device: 'cpu',
        threads,
        parallel: 1,
        context_size: contextSize,
        restart: 'never',
      });
      let ready: WorkerInfo | null = null;
      for await (const event of events) {
        if (event.type !== 'worker' || event.worker.worker_id !== spawned.worker_id) {
          continue;
        }
        hive.trackWorker(event.worker.pid);
        if (event.worker.state === 'failed' || event.worker.state === 'stopped') {
          throw new Error(`worker ${spawned.worker_id} ${event.worker.state}: ${event.worker.reason}`);
        }
        if (event.worker.state === 'ready') {
          ready = event.worker;
          break;
        }
      }
      if (ready === null) {
        throw new Error(`worker ${spawned.worker_id}: the event stream ended before it was ready`);
      }
      return finish(ready, began, performance.now() - started);
    } finally {
      clearTimeout(deadline);
      stop.abort();
    }
  }

  function finish(ready: WorkerInfo, began: number, ms: number): {ms: number; id: string; pid: number} {
    timelines.push(
      startTimeline({
        hiveStderr: hive.stderr(),
        hiveHome: hive.home,
        workerId: ready.worker_id,
        began,
        ended: began + ms,
        first: 'client: POST /v1/workers sent',
        last: "client: the hive's event says ready",
      }),
    );
    sparesExpected = spareWorkers ? 1 : 0;
    return {ms, id: ready.worker_id, pid: ready.pid!};
  }

  const spawnRows: Array<{round: number; hive_ms: number; by_hand_ms: number; load_1m: number}> = [];
  for (let index = 0; index < rounds; index++) {
    const order = index % 2 === 0 ? ['hive', 'hand'] : ['hand', 'hive'];
    let hiveMs = 0;
    let handMs = 0;
    for (const side of order) {
      await hiveSettled(hive, sparesExpected);
      if (side === 'hive') {
        const worker = await throughHive();
        hiveMs = worker.ms;
        await hive.client.stopWorker(worker.id);
      } else {
        handMs = await byHand();
      }
    }
    spawnRows.push({round: index + 1, hive_ms: round(hiveMs, 1), by_hand_ms: round(handMs, 1), load_1m: load1()});
    log(`spawn → ready, round ${index + 1}: hive ${round(hiveMs, 0)} ms, by hand ${round(handMs, 0)} ms (load ${load1()})`);
  }

  async function measureDecode(): Promise<Array<{round: number; hive_tps: number; straight_tps: number}>> {
    // Tokens/s: one worker, asked through the hive and straight at its own ollama serve.
    const worker = await throughHive();
    const servePid = fs
      .readdirSync('/proc')
      .filter(entry => /^\d+$/.test(entry))
      .find(pid => {
        try {
          const argv = fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0');
          return (
            argv[0] === ollama &&
            argv[1] === 'serve' &&
            fs.readFileSync(`/proc/${pid}/environ`, 'utf8').includes(`rbee-ollama-`) &&
            Number(fs.readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ')[1]) === worker.pid
          );
        } catch {
          return false;
        }
      });
    const host = fs
      .readFileSync(`/proc/${servePid}/environ`, 'utf8')
      .split('\0')
      .find(entry => entry.startsWith('OLLAMA_HOST='))!
      .slice('OLLAMA_HOST='.length);
    const tags = (await ok(`http://${host}/api/tags`)) as {models: Array<{name: string}>};
    const engineModel = tags.models[0]!.name;

    async function straight(): Promise<number> {
      const response = await fetch(`http://${host}/api/generate`, {
        method: 'POST',
        headers: {'content-type': 'application/json'},
        body: JSON.stringify({
          model: engineModel,
          prompt,
          raw: true,
          stream: true,
          options: {temperature: 0, seed: 1, num_predict: tokens, num_ctx: contextSize, num_thread: threads, num_gpu: 0},
        }),
      });
      let first: number | null = null;
      let last = 0;
      let count = 0;
      const decoder = new TextDecoder();
      let partial = '';
      for await (const chunk of response.body!) {
        const lines = (partial + decoder.decode(chunk, {stream: true})).split('\n');
        partial = lines.pop() ?? '';
        for (const line of lines.filter(Boolean)) {
          const parsed = JSON.parse(line) as {response?: string; done?: boolean; eval_count?: number};
          const now = performance.now();
          if ((parsed.response ?? '') !== '') {
            first ??= now;
            last = now;
          }
          if (parsed.done === true) {
            count = parsed.eval_count ?? 0;
          }
        }
      }
      return (count - 1) / ((last - first!) / 1000);
    }

    const speedRows: Array<{round: number; hive_tps: number; straight_tps: number}> = [];
    await straight(); // warm-up: the model's first prompt
    for (let index = 0; index < rounds + 2; index++) {
      const viaHive = async () =>
        (await streamInfer(hive.client, {model: model.name, prompt, max_tokens: tokens, temperature: 0, seed: 1})).decodeTokensPerSecond;
      const [a, b] = index % 2 === 0 ? [await viaHive(), await straight()] : [await straight(), await viaHive()].reverse();
      speedRows.push({round: index + 1, hive_tps: round(a!, 2), straight_tps: round(b!, 2)});
      log(`decode tok/s, round ${index + 1}: hive ${round(a!, 2)}, straight ${round(b!, 2)}`);
    }
    await hive.client.stopWorker(worker.id);
    return speedRows;
  }

  const speedRows = flags['spawn-only'] ? [] : await measureDecode();

  const spawnRatio = round(ratio(median(spawnRows.map(row => row.hive_ms)), median(spawnRows.map(row => row.by_hand_ms))), 3);
  const speedRatio =
    speedRows.length === 0 ? null : round(ratio(median(speedRows.map(row => row.hive_tps)), median(speedRows.map(row => row.straight_tps))), 3);
  const result = {
    bench: 'ollama',
    date: new Date().toISOString(),
    command: `npx tsx bench/ollama.ts --rounds ${rounds} --tokens ${tokens} --threads ${threads}${flags['spawn-only'] ? ' --spawn-only' : ''}${spareWorkers ? '' : ' --no-spares'}`,
    spare_workers: spareWorkers,
    load_average: {before: loadBefore, after: os.loadavg().map(value => round(value, 2))},
    machine: machineInfo(),
    model: modelInfo(model.name, model.path),
    ollama: {binary: ollama, version: installed.version},
    spawn_ready: {
      rows: spawnRows,
      median_hive_ms: median(spawnRows.map(row => row.hive_ms)),
      median_by_hand_ms: median(spawnRows.map(row => row.by_hand_ms)),
      ratio: spawnRatio,
      goal: '<= 1.2',
      // A hive's first spawn of a type has no spare yet (and pays the admission estimate): left out when there are others.
      timeline_median: medianTimeline(timelines.length > 1 ? timelines.slice(1) : timelines),
      timelines,
      by_hand_timeline_median: medianTimeline(handTimelines),
    },
    decode:
      speedRows.length === 0
        ? null
        : {
            rows: speedRows,
            median_hive_tps: median(speedRows.map(row => row.hive_tps)),
            median_straight_tps: median(speedRows.map(row => row.straight_tps)),
            ratio: speedRatio,
            goal: '>= 0.97',
          },
  };
  log(`spawn → ready: hive / by hand = ${spawnRatio} (goal ≤ 1.2); decode tok/s: hive / straight = ${speedRatio ?? 'not measured'} (goal ≥ 0.97)`);
  const timelineTable: Table = {
    title: `spawn → ready through the hive: where the time goes (median ms of rounds ${timelines.length > 1 ? `2–${timelines.length}` : '1'}, POST sent = 0)`,
    header: ['step', 'ms since sent', 'step took'],
    rows: timelineRows(result.spawn_ready.timeline_median),
  };
  const handTable: Table = {
    title: 'spawn → ready by hand (median ms, ollama serve spawned = 0)',
    header: ['step', 'ms since spawned', 'step took'],
    rows: timelineRows(result.spawn_ready.by_hand_timeline_median),
  };
  process.stdout.write(`${renderText(timelineTable)}\n\n${renderText(handTable)}\n`);
  const out = flags.out ?? path.join('bench', 'results');
  const base = path.join(out, `${localDate(new Date())}-cpu-vm-ollama${spareWorkers ? '' : '-no-spares'}`);
  fs.writeFileSync(`${base}.json`, `${JSON.stringify(result, null, 2)}\n`);
  fs.writeFileSync(`${base}-timeline.md`, `${renderMarkdown(timelineTable)}\n${renderMarkdown(handTable)}\n`);
  log(`written: ${base}.json and ${base}-timeline.md`);
} finally {
  await hive.stop();
}
