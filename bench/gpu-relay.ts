/**
 * The relay's cost where it is hardest: a llama-server built with CUDA, a model that decodes a
 * token every millisecond or so, asked through rbee's hive (hive → worker → llamacpp adapter →
 * llama-server) and straight at the same llama-server build started with the adapter's own
 * argument list (bench (e), llama-server-overhead.ts, run on a GPU device with one slot per stream).
 * Goal (issue 10 §6): tok/s through the hive ≥ 0.99× and TTFT ≤ +1 ms, at the median.
 *
 * Besides the ratios it records what the hive and worker processes' CPU did per 1,000 tokens and,
 * with --profile, a second short run with V8's CPU profiler in the hive and its worker: their top
 * frames during the measured batches only.
 *
 *   npm run build && node --import tsx bench/gpu-relay.ts --server <llama-server> --model <gguf> \
 *     [--device cuda:0] [--streams 1,64] [--rounds 5] [--max-tokens 256] [--context 1024] [--profile] [--out dir]
 * On a machine without tsx: the esbuild bundle of this file (bench/gpu/relay-on-gpu.sh).
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import {fileURLToPath, pathToFileURL} from 'node:url';
import {parseArgsOrUsage} from './lib/args.js';
import {cleanupAll, installExitHandlers} from './lib/cleanup.js';
import {profilesOf, summarizeProfile, type Span} from './lib/cpu-profile.js';
import {repoRoot} from './lib/hive-process.js';
import {gpuCardSlug, gpuOfDevice, nvidiaGpus} from './lib/gpu-info.js';
import {goal, verdictOf, writeDocument, type Document} from './lib/gpu-relay-report.js';
import {localDate, machineInfo, machineSlug, modelInfo} from './lib/machine.js';
import {runLlamaServerOverhead, type LlamaServerOverheadOptions} from './llama-server-overhead.js';

function usage(message?: string): never {
  if (message !== undefined) {
    process.stderr.write(`gpu-relay: ${message}\n`);
  }
  process.stderr.write(
    [
      'usage: node --import tsx bench/gpu-relay.ts --server <llama-server> --model <gguf> [options]',
      '  --device D        rbee device of the worker, and so --n-gpu-layers of both sides (default cuda:0)',
      '  --streams LIST    concurrent streams per batch, comma-separated (default 1,64); --parallel is their largest',
      '  --rounds N        alternating rounds, medians over them (default 5)',
      '  --max-tokens N    tokens per stream (default 256)',
      '  --context N       context per slot (default 1024; llama-server --ctx-size N × parallel, both sides)',
      "  --threads N       the worker's threads (default: llama-server's own)",
      "  --profile         then a short run with V8's CPU profiler in the hive and worker: top frames",
      '  --ttft-rounds N   then N rounds of one short request a side, back to back (default 200; 0: none)',
      '  --ttft-tokens N   tokens of each of those requests (default 4)',
      "  --ttft-warmup N   rounds before those, not counted (default 500: a serving hive's request path runs V8's optimized code)",
      "  --trace           the hive and worker mark each request's steps (RBEE_STARTUP_TRACE=1): the probe's timeline",
      "  --no-links        the hive asks its worker over HTTP, not its Unix-socket link (RBEE_NO_WORKER_LINKS=1): the links' share",
      '  --skip-worker-direct  leave out the worker asked at its own port (the breakdown); a third less time',
      '  --smoke           a check that the pipeline works on a busy machine: no waiting for quiet, no re-runs (numbers mean little)',
      '  --name STEM       results file stem (default <date>-gpu-<card>-relay, or <date>-<machine>-relay without a GPU)',
      '  --out DIR         where the .json and .md go (default bench/results)',
      '',
    ].join('\n'),
  );
  process.exit(message === undefined ? 0 : 2);
}

function positiveInteger(name: string, text: string | undefined, fallback: number): number {
  const value = text === undefined ? fallback : Number(text);
  if (!Number.isInteger(value) || value < 1 || value > 1_000_000) {
    usage(`--${name} must be a positive integer, not "${text}"`);
  }
  return value;
}

/** A short second run with the profiler on in the hive and its worker (NODE_OPTIONS reaches the worker): cut to the rbee batches. */
async function profileRun(base: LlamaServerOverheadOptions, streams: number, log: (message: string) => void): Promise<NonNullable<Document['profile']>> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'rbee-relay-prof-'));
  const spans: Span[] = [];
  const rounds = 2;
  const result = await runLlamaServerOverhead({
    ...base,
    rounds,
    concurrencies: [streams],
    workerDirect: false,
    trace: false,
    ttftProbe: undefined,
    // Node 20 refuses --cpu-prof in NODE_OPTIONS; a preload that runs the same profiler is allowed, and reaches the worker too.
    hiveEnv: {
      ...base.hiveEnv,
      NODE_OPTIONS: `--import=${pathToFileURL(path.join(repoRoot, 'bench', 'lib', 'cpu-prof-preload.mjs')).href}`,
      RBEE_BENCH_CPU_PROF_DIR: dir,
    },
    onBatch: span => {
      if (span.side === 'rbee' && span.round >= 0) {
        spans.push({fromNs: span.fromNs, toNs: span.toNs});
      }
    },
  });
  const hive = profilesOf(dir, result.rbee.hive_pid).map(file => summarizeProfile(file, spans));
  const worker = profilesOf(dir, result.rbee.worker_pid).map(file => summarizeProfile(file, spans));
  log(`profiles: ${fs.readdirSync(dir).join(', ')} (hive ${result.rbee.hive_pid}, worker ${result.rbee.worker_pid})`);
  return {
    note: `a separate run (profiling costs CPU): hive and worker profiled by V8's sampler (bench/lib/cpu-prof-preload.mjs through NODE_OPTIONS, 500 µs); samples cut to the ${spans.length} measured via-hive batches; raw profiles in ${dir}`,
    hive,
    worker,
    streams,
    rounds,
  };
}

async function main(): Promise<void> {
  const argv = process.argv.slice(2);
  const values = parseArgsOrUsage(
    argv,
    {
      server: {type: 'string'},
      model: {type: 'string'},
      device: {type: 'string', default: 'cuda:0'},
      streams: {type: 'string', default: '1,64'},
      rounds: {type: 'string'},
      'max-tokens': {type: 'string'},
      context: {type: 'string'},
      threads: {type: 'string'},
      profile: {type: 'boolean', default: false},
      'ttft-rounds': {type: 'string'},
      'ttft-tokens': {type: 'string'},
      'ttft-warmup': {type: 'string'},
      trace: {type: 'boolean', default: false},
      'no-links': {type: 'boolean', default: false},
      smoke: {type: 'boolean', default: false},
      'skip-worker-direct': {type: 'boolean', default: false},
      name: {type: 'string'},
      out: {type: 'string'},
      help: {type: 'boolean', short: 'h', default: false},
    },
    usage,
  );
  if (values.server === undefined || !fs.existsSync(values.server)) {
    usage(`--server must name a llama-server binary (${values.server ?? 'none given'})`);
  }
  if (values.model === undefined || !fs.existsSync(values.model)) {
    usage(`--model must name a GGUF file (${values.model ?? 'none given'})`);
  }
  if (!/^(cpu|cuda:\d+)$/.test(values.device)) {
    usage(`--device must be cpu or cuda:N, not "${values.device}"`);
  }
  const streams = values.streams.split(',').map(text => positiveInteger('streams', text.trim(), 1));
  const rounds = positiveInteger('rounds', values.rounds, 5);
  const maxTokens = positiveInteger('max-tokens', values['max-tokens'], 256);
  const contextSize = positiveInteger('context', values.context, 1024);
  const threads = values.threads === undefined ? undefined : positiveInteger('threads', values.threads, 1);
  const ttftRounds = values['ttft-rounds'] === '0' ? 0 : positiveInteger('ttft-rounds', values['ttft-rounds'], 200);
  const ttftTokens = positiveInteger('ttft-tokens', values['ttft-tokens'], 4);
  const ttftWarmup = values['ttft-warmup'] === '0' ? 0 : positiveInteger('ttft-warmup', values['ttft-warmup'], 500);
  const log = (message: string) => process.stderr.write(`[gpu-relay ${new Date().toISOString().slice(11, 19)}] ${message}\n`);
  installExitHandlers((15 + rounds * 3) * 60_000);

  const started = new Date();
  const began = performance.now();
  const machine = machineInfo();
  // A copy without git (the GPU machine's) carries the commit it was bundled from.
  const commitFile = path.join(repoRoot, 'bench', '.work', 'gpu-relay.commit');
  if (machine.git_commit === null && fs.existsSync(commitFile)) {
    machine.git_commit = fs.readFileSync(commitFile, 'utf8').trim();
  }
  const gpu = values.device === 'cpu' ? null : gpuOfDevice(values.device, nvidiaGpus());
  const model = modelInfo(path.basename(values.model), path.resolve(values.model));
  const card = gpu === null ? null : gpuCardSlug(gpu);
  const stem = values.name ?? `${localDate(started)}-${card === null ? machineSlug(machine) : `gpu-${card}`}-relay`;
  log(
    `${gpu?.name ?? 'no GPU'} (${values.device}), ${machine.cpu_model} × ${machine.cores}; ${model.file}; streams ${streams.join(', ')}; ${rounds} rounds; ${maxTokens} tokens`,
  );

  const options: LlamaServerOverheadOptions = {
    modelPath: model.path,
    serverPath: path.resolve(values.server),
    device: values.device,
    ...(threads === undefined ? {} : {threads}),
    rounds,
    concurrencies: streams,
    // One slot per stream at the largest count: no request waits in a queue, on either side.
    parallel: Math.max(...streams),
    contextSize,
    maxTokens,
    log,
    workerDirect: !values['skip-worker-direct'],
    ...(ttftRounds === 0 ? {} : {ttftProbe: {rounds: ttftRounds, warmupRounds: ttftWarmup, maxTokens: ttftTokens}}),
    trace: values.trace,
    ...(values['no-links'] ? {hiveEnv: {RBEE_NO_WORKER_LINKS: '1'}} : {}),
    ...(values.smoke ? {quietWaitMs: 0, retryDisturbed: 0} : {}),
  };
  const overhead = await runLlamaServerOverhead(options);
  const out = values.out ?? fileURLToPath(new URL('./results/', import.meta.url));
  const documentOf = (profile: Document['profile']): Document => ({
    schema: 'rbee-bench-gpu-relay/1',
    date: started.toISOString(),
    command: ['node', 'bench/gpu-relay.ts', ...argv].join(' '),
    wall_seconds: Math.round((performance.now() - began) / 1000),
    machine,
    gpu,
    model,
    goal,
    verdicts: overhead.concurrency.map(verdictOf),
    overhead,
    profile,
  });
  // Written before the profile run too: a device call cut short by its time limit still brings the measurement back.
  writeDocument(documentOf(null), out, stem);
  if (values.profile) {
    writeDocument(documentOf(await profileRun(options, Math.max(...streams), log)), out, stem);
  }
}

const invokedDirectly = process.argv[1] !== undefined && import.meta.url === pathToFileURL(path.resolve(process.argv[1])).href;
if (invokedDirectly) {
  try {
    await main();
  } catch (error) {
    process.stderr.write(`[gpu-relay] failed: ${(error as Error).stack ?? String(error)}\n`);
    process.exitCode = 1;
  } finally {
    await cleanupAll();
  }
}
