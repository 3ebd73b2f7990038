/**
 * Models on demand (issue 13), against the same work done by hand with the same engine:
 *
 *   cold:  rbee  — a hive with a catalogue and nothing running; POST /v1/infer naming the entry,
 *                  sent → first token (the hive starts the worker, which starts llama-server).
 *          hand  — llama-server spawned with the argument list the adapter gave its own, /health
 *                  polled, then the same request: spawn → first token.
 *   swap:  rbee  — `maxLoadedModels: 1`, entry A ready and idle; a request for B, sent → first
 *                  token (the hive drains and stops A, then starts B).
 *          hand  — llama-swap's design: SIGTERM A and wait for its exit, spawn B, poll /health,
 *                  send the request: stop → first token.
 *
 * A and B are the same GGUF with different context sizes, so both sides read a file the page
 * cache already holds and the swap measures the lifecycle, not the disk. Rounds alternate which
 * side goes first; medians and their ratio are printed and written to bench/results/.
 *
 *   npm run build && node --import tsx bench/on-demand.ts [--rounds 5] [--threads 2] [--out bench/results]
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import {findLlamaCpp} from '../src/engines/llama-cpp-build.js';
import {resolveModel} from '../src/models/resolve-model.js';
import {parseArgsOrUsage} from './lib/args.js';
import {cleanupAll, installExitHandlers} from './lib/cleanup.js';
import {hiveSettled, startHiveProcess, type HiveProcess} from './lib/hive-process.js';
import {pollUntil} from './lib/http.js';
import {childPids, cmdline, freeLoopbackPort, startLlamaServer, withArg, type LlamaServerProcess} from './lib/llama-server-process.js';
import {localDate, machineInfo, machineSlug} from './lib/machine.js';
import {ratio, roundSummary, summarize} from './lib/stats.js';
import {timedStream} from './lib/sse-timing.js';
import {epochNow, medianTimeline, startTimeline, timelineRows, type TimelineStep} from './lib/startup-timeline.js';
import {fmt, fmtRatio, renderMarkdown, renderText, type Table} from './lib/table.js';

const prompt = 'The capital of France is';
const maxTokens = 8;
const contextSizes = {a: 1024, b: 2048} as const;
type Entry = keyof typeof contextSizes;

function usage(message?: string): never {
  if (message !== undefined) {
    process.stderr.write(`bench/on-demand: ${message}\n`);
  }
  process.stderr.write('usage: node --import tsx bench/on-demand.ts [--rounds N (default 5)] [--threads N (default 2)] [--no-spares] [--out DIR]\n');
  process.exit(message === undefined ? 0 : 2);
}

const flags = parseArgsOrUsage(
  process.argv.slice(2),
  {
    rounds: {type: 'string'},
    threads: {type: 'string'},
    out: {type: 'string'},
    'no-spares': {type: 'boolean', default: false},
    help: {type: 'boolean', short: 'h', default: false},
  },
  usage,
);
const rounds = Number(flags.rounds ?? 5);
/** The hive keeps a booted worker process per type in use (hive.spareWorkers); --no-spares measures it without. */
const spareWorkers = flags['no-spares'] !== true;
const threads = Number(flags.threads ?? 2);
if (!Number.isInteger(rounds) || rounds < 1 || rounds > 50) {
  usage('--rounds must be an integer from 1 to 50');
}
if (!Number.isInteger(threads) || threads < 1 || threads > 256) {
  usage('--threads must be an integer from 1 to 256');
}
const log = (line: string) => process.stderr.write(`${line}\n`);
installExitHandlers((5 + rounds * 3) * 60_000);

const llamaCpp = findLlamaCpp();
if (llamaCpp === null) {
  usage('no llama.cpp build is cached: run `rbee engines install llama.cpp` (or npm test, which builds it) first');
}
const model = await resolveModel('default', {modelsDir: path.join(os.homedir(), '.cache', 'rbee', 'models')});
const modelPath = model.path;

const configDir = fs.mkdtempSync(path.join(os.tmpdir(), 'rbee-bench-on-demand-'));
const configFile = path.join(configDir, 'rbee.config.json');
const entry = (name: Entry) => ({model: modelPath, type: 'llamacpp', device: 'cpu', contextSize: contextSizes[name], parallel: 1, threads, pin: false});
fs.writeFileSync(
  configFile,
  `${JSON.stringify({hive: {maxLoadedModels: 1, spareWorkers}, types: {llamacpp: {engine: 'llama-server'}}, models: {a: entry('a'), b: entry('b')}})}\n`,
  {mode: 0o600},
);

async function runningWorkers(hive: HiveProcess) {
  return (await hive.client.listWorkers()).workers.filter(worker => worker.state !== 'stopped' && worker.state !== 'failed');
}

async function stopAllWorkers(hive: HiveProcess): Promise<void> {
  for (const worker of await runningWorkers(hive)) {
    await hive.client.stopWorker(worker.worker_id);
  }
  try {
    await pollUntil('every worker stopped', async () => ((await runningWorkers(hive)).length === 0 ? true : undefined), 120_000, 50);
  } catch (error) {
    const left = (await runningWorkers(hive)).map(worker => `${worker.worker_id} ${worker.state} (${worker.reason ?? 'no reason'})`);
    throw new Error(`workers still running: ${left.join('; ')}`, {cause: error});
  }
}

/** POST /v1/infer naming a catalogue entry: ms from sending to the first token, and the timeline of the start it waited for. */
async function hiveFirstToken(hive: HiveProcess, name: Entry): Promise<{ms: number; timeline: TimelineStep[]}> {
  const before = (await hive.client.catalogue()).models.flatMap(model => (model.worker_id === null ? [] : [model.worker_id]));
  const began = epochNow();
  const timed = await timedStream(`${hive.url}/v1/infer`, {model: name, prompt, max_tokens: maxTokens, temperature: 0, seed: 1}, 'rbee', 300_000);
  const workerId = (await hive.client.catalogue()).models.find(model => model.name === name)?.worker_id ?? 'none';
  const timeline = startTimeline({
    hiveStderr: hive.stderr(),
    hiveHome: hive.home,
    workerId,
    otherWorkerIds: before.filter(id => id !== workerId),
    began,
    ended: began + timed.ttftMs,
    first: 'client: request sent',
    last: 'client: first token',
  });
  return {ms: timed.ttftMs, timeline};
}

/** The argument list the adapter gave the llama-server of entry `name`'s worker (port aside). */
async function adapterArgv(hive: HiveProcess, name: Entry): Promise<string[]> {
  await hiveFirstToken(hive, name);
  const workerId = (await hive.client.catalogue()).models.find(model => model.name === name)?.worker_id;
  if (workerId === undefined || workerId === null) {
    throw new Error(`no worker serves catalogue entry ${name}`);
  }
  const worker = await hive.client.getWorker(workerId);
  const servers = worker.pid === null ? [] : childPids(worker.pid).filter(child => path.basename(cmdline(child)[0] ?? '').startsWith('llama-server'));
  if (servers.length !== 1) {
    throw new Error(`worker ${workerId} runs ${servers.length} llama-server processes, not 1`);
  }
  return cmdline(servers[0]!);
}

async function byHandStart(argv: string[]): Promise<LlamaServerProcess> {
  return startLlamaServer(argv[0]!, withArg(argv.slice(1), '--port', String(await freeLoopbackPort())), {startTimeoutMs: 300_000});
}

async function byHandFirstToken(server: LlamaServerProcess): Promise<number> {
  const timed = await timedStream(
    `${server.url}/completion`,
    {prompt, n_predict: maxTokens, cache_prompt: true, temperature: 0, seed: 1},
    'llama-server',
    300_000,
  );
  return timed.ttftMs;
}

type Sample = {round: number; cold: {rbee: number; hand: number}; swap: {rbee: number; hand: number}};
type Timelines = {cold: {rbee: TimelineStep[]; hand: TimelineStep[]}; swap: {rbee: TimelineStep[]}};

// Every step of a start leaves a timestamped mark (hive and worker), read back into each round's timeline.
const hive = await startHiveProcess({args: ['--config', configFile, '--heartbeat-interval', '1000'], env: {RBEE_STARTUP_TRACE: '1'}});
const samples: Sample[] = [];
const timelines: Timelines[] = [];
try {
  log(`hive ${hive.url}; catalogue a (ctx ${contextSizes.a}) and b (ctx ${contextSizes.b}) on ${model.path}, maxLoadedModels 1`);
  const argv = {a: await adapterArgv(hive, 'a'), b: [] as string[]};
  argv.b = await adapterArgv(hive, 'b');
  log(`the adapter's llama-server for a: ${argv.a.join(' ')}`);

  for (let round = 1; round <= rounds; round++) {
    const rbeeFirst = round % 2 === 1;
    const sample: Sample = {round, cold: {rbee: Number.NaN, hand: Number.NaN}, swap: {rbee: Number.NaN, hand: Number.NaN}};
    const timeline: Timelines = {cold: {rbee: [], hand: []}, swap: {rbee: []}};
    const rbeeSide = async () => {
      await stopAllWorkers(hive);
      await hiveSettled(hive, spareWorkers ? 1 : 0);
      const cold = await hiveFirstToken(hive, 'a');
      sample.cold.rbee = cold.ms;
      timeline.cold.rbee = cold.timeline;
      // A is ready and idle now: the request for B makes the hive stop it to keep within one model.
      const swapped = await hiveFirstToken(hive, 'b');
      sample.swap.rbee = swapped.ms;
      timeline.swap.rbee = swapped.timeline;
      await stopAllWorkers(hive);
      await hiveSettled(hive, spareWorkers ? 1 : 0);
    };
    const handSide = async () => {
      const coldBegan = performance.now();
      const first = await byHandStart(argv.a);
      const healthy = performance.now();
      const sent = performance.now();
      await byHandFirstToken(first);
      sample.cold.hand = performance.now() - coldBegan;
      timeline.cold.hand = [
        {step: 'client: llama-server spawned', ms: 0},
        {step: 'client: /health answered ok', ms: Math.round(healthy - coldBegan)},
        {step: 'client: request sent', ms: Math.round(sent - coldBegan)},
        {step: 'client: first token', ms: Math.round(sample.cold.hand)},
      ];
      const swapBegan = performance.now();
      await first.stop();
      const second = await byHandStart(argv.b);
      await byHandFirstToken(second);
      sample.swap.hand = performance.now() - swapBegan;
      await second.stop();
    };
    for (const side of rbeeFirst ? [rbeeSide, handSide] : [handSide, rbeeSide]) {
      await side();
    }
    samples.push(sample);
    timelines.push(timeline);
    log(
      `round ${round}: cold rbee ${fmt(sample.cold.rbee, 0)} ms, by hand ${fmt(sample.cold.hand, 0)} ms; swap rbee ${fmt(sample.swap.rbee, 0)} ms, by hand ${fmt(sample.swap.hand, 0)} ms`,
    );
  }
} finally {
  await hive.stop();
  await cleanupAll();
}

const summary = (pick: (sample: Sample) => number) => summarize(samples.map(pick));
const cold = {rbee: summary(sample => sample.cold.rbee), hand: summary(sample => sample.cold.hand)};
const swap = {rbee: summary(sample => sample.swap.rbee), hand: summary(sample => sample.swap.hand)};
const result = {
  date: new Date().toISOString(),
  machine: machineInfo(),
  load_average: os.loadavg(),
  model: model.path,
  config: {
    rounds,
    threads,
    spare_workers: spareWorkers,
    max_tokens: maxTokens,
    context_sizes: contextSizes,
    engine: 'llama-server',
    llama_cpp: llamaCpp.binDir,
  },
  cold: {rbee_ms: roundSummary(cold.rbee), hand_ms: roundSummary(cold.hand), ratio: ratio(cold.rbee.median, cold.hand.median), goal: 1.1},
  swap: {rbee_ms: roundSummary(swap.rbee), hand_ms: roundSummary(swap.hand), ratio: ratio(swap.rbee.median, swap.hand.median)},
  timeline: {
    cold_rbee: medianTimeline(timelines.map(timeline => timeline.cold.rbee)),
    cold_hand: medianTimeline(timelines.map(timeline => timeline.cold.hand)),
    swap_rbee: medianTimeline(timelines.map(timeline => timeline.swap.rbee)),
  },
  samples,
  timelines,
};

const table: Table = {
  title: `Models on demand: request → first token, ms (medians of ${rounds} rounds)`,
  header: ['measure', 'through the hive', 'by hand', 'ratio', 'goal'],
  rows: [
    ['cold start', fmt(cold.rbee.median, 0), fmt(cold.hand.median, 0), fmtRatio(result.cold.ratio), '≤ 1.1×'],
    ['swap (maxLoadedModels 1)', fmt(swap.rbee.median, 0), fmt(swap.hand.median, 0), fmtRatio(result.swap.ratio), 'as fast as stop + start'],
  ],
  notes: [
    'by hand, cold: spawn llama-server with the adapter’s argument list → /health → the same request’s first token',
    'by hand, swap: SIGTERM the running llama-server and wait for its exit, then the cold start of the other',
    `load average at the end: ${os
      .loadavg()
      .map(value => value.toFixed(2))
      .join(' ')}`,
  ],
};
const timelineTable = (title: string, steps: TimelineStep[]): Table => ({
  title,
  header: ['step', 'ms since sent', 'step took'],
  rows: timelineRows(steps),
});
const timelineTables = [
  timelineTable(`Cold start through the hive: where the time goes (median ms of ${rounds} rounds, request sent = 0)`, result.timeline.cold_rbee),
  timelineTable('Cold start by hand (median ms, spawn = 0)', result.timeline.cold_hand),
  timelineTable(`Swap through the hive (median ms, request for b sent = 0)`, result.timeline.swap_rbee),
];
process.stdout.write(`${renderText(table)}\n`);
for (const timelineTableOf of timelineTables) {
  process.stdout.write(`\n${renderText(timelineTableOf)}\n`);
}
const out = flags.out ?? path.join('bench', 'results');
fs.mkdirSync(out, {recursive: true});
const base = path.join(out, `${localDate(new Date())}-${machineSlug(result.machine)}-on-demand${spareWorkers ? '' : '-no-spares'}`);
fs.writeFileSync(`${base}.json`, `${JSON.stringify(result, null, 2)}\n`);
fs.writeFileSync(
  `${base}.md`,
  `# Models on demand vs the engine by hand — ${localDate(new Date())}\n\nCommand: \`node --import tsx bench/on-demand.ts --rounds ${rounds} --threads ${threads}${spareWorkers ? '' : ' --no-spares'}\`; model ${path.basename(model.path)}; llama.cpp ${llamaCpp.binDir}.\n\n${[table, ...timelineTables].map(renderMarkdown).join('\n')}\n`,
);
log(`wrote ${base}.json and .md`);
