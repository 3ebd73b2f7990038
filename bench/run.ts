/**
 * rbee's benchmarks, in sequence: (a) spawn → ready against a bare node-llama-cpp process,
 * (b) routing overhead of the hive against the worker asked directly, (c) heartbeat ingest of one
 * hive at 1k/5k/10k simulated workers, (d) how fast a hive notices a killed or hung worker. Writes
 * bench/results/<yyyy-mm-dd>-cpu-<host>.{json,md} and prints the medians, p90s and ratios.
 *
 *   npm run build && node --import tsx bench/run.ts [--only spawn|routing|ingest|crash] [--runs N] [--quick]
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import {fileURLToPath} from 'node:url';
import {resolveModel} from '../src/models/resolve-model.js';
import {parseArgsOrUsage} from './lib/args.js';
import {cleanupAll, installExitHandlers} from './lib/cleanup.js';
import {rbeeBin} from './lib/hive-process.js';
import {crashTables, ingestTables} from './lib/ingest-crash-tables.js';
import {machineInfo, machineSlug, modelInfo, type MachineInfo, type ModelInfo} from './lib/machine.js';
import {median} from './lib/stats.js';
import {fmt, fmtRatio, renderMarkdown, renderText, type Table} from './lib/table.js';
import {runCrashDetection, type CrashResult} from './crash-detection.js';
import {runHeartbeatIngest, type IngestResult} from './heartbeat-ingest.js';
import {runRoutingOverhead, type RoutingResult} from './routing-overhead.js';
import {runSpawnReady, type SpawnReadyResult} from './spawn-ready.js';

const resultsDir = fileURLToPath(new URL('./results/', import.meta.url));

const benchmarks = ['spawn', 'routing', 'ingest', 'crash'] as const;
type Options = {only: (typeof benchmarks)[number] | null; runs: number; tinyRequests: number; quick: boolean; render: string | null};

function usage(message?: string): never {
  if (message !== undefined) {
    process.stderr.write(`bench: ${message}\n`);
  }
  process.stderr.write(
    'usage: node --import tsx bench/run.ts [--only spawn|routing|ingest|crash] [--runs N] [--quick]\n' +
      '       node --import tsx bench/run.ts --render bench/results/<file>.json\n' +
      '  --runs N         spawn runs per side, routing rounds per configuration, crash/hang rounds (default 5; --quick: 2)\n' +
      '  --quick          2 runs/rounds, 10 tiny requests each way instead of 30, 3 s ingest windows instead of 10\n' +
      '  --render <json>  measure nothing: rewrite the .md beside a results .json and print its tables\n',
  );
  process.exit(message === undefined ? 0 : 2);
}

function parseOptions(argv: string[]): Options {
  const values = parseArgsOrUsage(
    argv,
    {
      only: {type: 'string'},
      runs: {type: 'string'},
      quick: {type: 'boolean', default: false},
      render: {type: 'string'},
      help: {type: 'boolean', short: 'h', default: false},
    },
    usage,
  );
  const only = values.only ?? null;
  if (only !== null && !(benchmarks as readonly string[]).includes(only)) {
    usage(`--only must be one of ${benchmarks.join(', ')}, not "${only}"`);
  }
  const quick = values.quick === true;
  let runs = quick ? 2 : 5;
  if (values.runs !== undefined) {
    runs = Number(values.runs);
    if (!Number.isInteger(runs) || runs < 1 || runs > 50) {
      usage(`--runs must be an integer from 1 to 50, not "${values.runs}"`);
    }
  }
  return {only: only as Options['only'], runs, tinyRequests: quick ? 10 : 30, quick, render: values.render ?? null};
}

const log = (message: string) => process.stderr.write(`[bench] ${message}\n`);

function localDate(date: Date): string {
  const pad = (value: number) => String(value).padStart(2, '0');
  return `${date.getFullYear()}-${pad(date.getMonth() + 1)}-${pad(date.getDate())}`;
}

function spawnTables(result: SpawnReadyResult): Table[] {
  const {rbee, peer} = result;
  return [
    {
      title: `(a) spawn → ready, ms (threads ${result.config.threads}, parallel 1, context ${result.config.context_size}; ${result.config.runs} runs each, alternating)`,
      header: ['measure', 'n', 'rbee median', 'rbee p90', 'peer median', 'peer p90', 'rbee/peer'],
      rows: [
        [
          'spawn → ready',
          String(rbee.ready_ms.n),
          fmt(rbee.ready_ms.median),
          fmt(rbee.ready_ms.p90),
          fmt(peer.ready_ms.median),
          fmt(peer.ready_ms.p90),
          fmtRatio(result.ratio_ready),
        ],
        [
          'stop (→ process gone)',
          String(rbee.stop_ms.n),
          fmt(rbee.stop_ms.median),
          fmt(rbee.stop_ms.p90),
          fmt(peer.stop_ms.median),
          fmt(peer.stop_ms.p90),
          fmtRatio(result.ratio_stop),
        ],
      ],
      notes: [
        `rbee = POST /v1/workers on a running hive → GET /v1/workers/:id says ready (heartbeat ${result.config.hive_heartbeat_interval_ms} ms, polled every ${result.config.poll_interval_ms} ms); peer = spawn of a bare node + node-llama-cpp process → context ready.`,
        `rbee overhead over the peer: ${fmt(result.overhead_ready_ms)} ms (median − median).`,
        `rbee breakdown (medians): POST answered ${fmt(rbee.post_ms.median)} ms; worker's own /health ready ${fmt(rbee.worker_health_ready_ms.median)} ms; hive noticed ${fmt(rbee.hive_notice_lag_ms.median)} ms later (p90 ${fmt(rbee.hive_notice_lag_ms.p90)}; 0 = within the same ${result.config.poll_interval_ms} ms poll).`,
        `hive SIGTERM → exit at the end: ${fmt(result.hive_stop_ms)} ms.`,
      ],
    },
  ];
}

function routingTables(result: RoutingResult): Table[] {
  const rows: string[][] = [];
  for (const entry of result.concurrency) {
    const label = `${entry.concurrency} stream${entry.concurrency === 1 ? '' : 's'}`;
    rows.push(
      [
        `${label}: TTFT ms`,
        fmt(entry.direct.ttft_ms.median),
        fmt(entry.direct.ttft_ms.p90),
        fmt(entry.hive.ttft_ms.median),
        fmt(entry.hive.ttft_ms.p90),
        fmtRatio(entry.ratio.ttft),
      ],
      [
        `${label}: per-stream decode tok/s`,
        fmt(entry.direct.decode_tps_per_stream.median, 2),
        fmt(entry.direct.decode_tps_per_stream.p90, 2),
        fmt(entry.hive.decode_tps_per_stream.median, 2),
        fmt(entry.hive.decode_tps_per_stream.p90, 2),
        fmtRatio(entry.ratio.decode_tps_per_stream),
      ],
      [
        `${label}: aggregate tok/s`,
        fmt(entry.direct.aggregate_tps.median, 2),
        fmt(entry.direct.aggregate_tps.p90, 2),
        fmt(entry.hive.aggregate_tps.median, 2),
        fmt(entry.hive.aggregate_tps.p90, 2),
        fmtRatio(entry.ratio.aggregate_tps),
      ],
    );
  }
  rows.push([
    'tiny non-streamed (max_tokens 1) ms',
    fmt(result.tiny.direct_ms.median, 2),
    fmt(result.tiny.direct_ms.p90, 2),
    fmt(result.tiny.hive_ms.median, 2),
    fmt(result.tiny.hive_ms.p90, 2),
    fmtRatio(result.tiny.ratio),
  ]);
  // A batch far slower than its configuration's usual one was almost always hit by something else on the machine.
  const outliers = result.concurrency.flatMap(entry => {
    const usual = median(entry.batches.map(batch => batch.wall_ms));
    return entry.batches
      .filter(batch => batch.wall_ms > 2 * usual)
      .map(batch => `${entry.concurrency} streams, round ${batch.round + 1} ${batch.path} (${fmt(batch.wall_ms / 1000)} s vs ${fmt(usual / 1000)} s usual)`);
  });
  const tokens = result.concurrency
    .map(entry => `${entry.concurrency}: ${fmt(entry.direct.tokens_per_stream.median, 0)}/${fmt(entry.hive.tokens_per_stream.median, 0)}`)
    .join(', ');
  return [
    {
      title: `(b) routing overhead: hive vs direct to the same worker (threads ${result.config.threads}, parallel ${result.config.parallel}, context ${result.config.context_size_per_sequence}/sequence, max_tokens ${result.config.max_tokens}; ${result.config.rounds} rounds each, alternating)`,
      header: ['measure', 'direct median', 'direct p90', 'hive median', 'hive p90', 'hive/direct'],
      rows,
      notes: [
        `hive added latency, tiny request: ${fmt(result.tiny.added_ms, 2)} ms (median − median over ${result.tiny.requests_each} requests each way).`,
        `TTFT and per-stream medians are over every stream of every round; aggregate medians over rounds. tok/s ratios < 1 and TTFT ratios > 1 mean the hive is slower.`,
        `median tokens generated per stream (direct/hive), by streams: ${tokens}.`,
        `worker spawn → ready for this part: ${fmt(result.worker.ready_ms)} ms; hive SIGTERM → exit: ${fmt(result.hive_stop_ms)} ms.`,
        ...(outliers.length === 0
          ? []
          : [`outlier batches (wall time > 2× the configuration's median; medians absorb them, p90s do not): ${outliers.join('; ')}.`]),
      ],
    },
  ];
}

type BenchDocument = {
  schema: 'rbee-bench/1';
  date: string;
  command: string;
  options: {only: Options['only']; runs: number; quick: boolean; tiny_requests: number};
  wall_seconds: number;
  load_average: {before: number[]; after: number[]};
  machine: MachineInfo;
  model: ModelInfo;
  spawn_ready: SpawnReadyResult | null;
  routing_overhead: RoutingResult | null;
  /** Absent from results recorded before these two benchmarks existed. */
  heartbeat_ingest?: IngestResult | null;
  crash_detection?: CrashResult | null;
};

function machineMarkdown(document: BenchDocument): string {
  const {machine, model} = document;
  return [
    '| | |',
    '|:---|:---|',
    `| date | ${document.date} |`,
    `| CPU | ${machine.cpu_model} × ${machine.cores} cores (available parallelism ${machine.available_parallelism}), no GPU |`,
    `| memory | ${machine.memory_gib} GiB |`,
    `| OS | ${machine.platform} ${machine.kernel} ${machine.arch} (host ${machine.hostname}) |`,
    `| Node.js | ${machine.node} |`,
    `| node-llama-cpp | ${machine.node_llama_cpp} (CPU backend, build: never) |`,
    `| rbee | ${machine.rbee}${machine.git_commit === null ? ' (no commit)' : ` @ ${machine.git_commit.slice(0, 12)}`} |`,
    `| model | ${model.file} (${model.size_bytes} bytes, ${model.size_mib} MiB) at \`${model.path}\` |`,
    `| command | \`${document.command}\` |`,
    `| wall time | ${document.wall_seconds} s |`,
    `| load average (1/5/15 min) | before ${document.load_average.before.join(' / ')}, after ${document.load_average.after.join(' / ')} |`,
  ].join('\n');
}

/** Writes the .md beside the .json and prints the tables: after a run, or again from a recorded .json (--render). */
function report(document: BenchDocument, jsonFile: string): void {
  const {machine, model} = document;
  const tables = [
    ...(document.spawn_ready === null ? [] : spawnTables(document.spawn_ready)),
    ...(document.routing_overhead === null ? [] : routingTables(document.routing_overhead)),
    ...(document.heartbeat_ingest == null ? [] : ingestTables(document.heartbeat_ingest)),
    ...(document.crash_detection == null ? [] : crashTables(document.crash_detection)),
  ];
  const markdownFile = jsonFile.replace(/\.json$/, '.md');
  fs.writeFileSync(
    markdownFile,
    [
      `# rbee benchmarks, ${document.date.slice(0, 10)}, ${machine.cpu_model} × ${machine.cores} (CPU only)`,
      '',
      machineMarkdown(document),
      '',
      'Medians and p90s of repeated, alternating runs; ratios are of medians. See `bench/README.md` for what each number means.',
      '',
      ...tables.flatMap(table => [renderMarkdown(table), '']),
    ].join('\n'),
  );
  process.stdout.write(
    `\nrbee bench: ${machine.cpu_model} × ${machine.cores}, Node ${machine.node}, node-llama-cpp ${machine.node_llama_cpp}, ${model.file} (${model.size_mib} MiB), ${document.wall_seconds} s\n\n`,
  );
  process.stdout.write(`${tables.map(renderText).join('\n\n')}\n\n`);
  process.stdout.write(`wrote ${path.relative(process.cwd(), jsonFile)} and ${path.relative(process.cwd(), markdownFile)}\n`);
}

async function main(): Promise<void> {
  const argv = process.argv.slice(2);
  const options = parseOptions(argv);
  if (options.render !== null) {
    report(JSON.parse(fs.readFileSync(options.render, 'utf8')) as BenchDocument, path.resolve(options.render));
    return;
  }
  if (!fs.existsSync(path.join(path.dirname(rbeeBin), '..', 'dist', 'cli', 'main.js'))) {
    throw new Error('dist/ is missing: run `npm run build` first (npm run bench does)');
  }
  // Bounded: whatever happens, the run ends and cleans up by this deadline.
  installExitHandlers(Math.max(15, 8 + options.runs * 3) * 60_000);

  const started = new Date();
  const began = performance.now();
  const loadBefore = os.loadavg().map(value => Math.round(value * 100) / 100);
  const modelsDir = path.join(os.homedir(), '.cache', 'rbee', 'models');
  log(`resolving the default model in ${modelsDir}`);
  const resolved = await resolveModel('default', {modelsDir});
  const model = modelInfo(resolved.name, resolved.path);
  const machine = machineInfo();
  log(`${machine.cpu_model} × ${machine.cores}, Node ${machine.node}, node-llama-cpp ${machine.node_llama_cpp}; model ${model.file} (${model.size_mib} MiB)`);

  let spawn: SpawnReadyResult | null = null;
  let routing: RoutingResult | null = null;
  let ingest: IngestResult | null = null;
  let crash: CrashResult | null = null;
  if (options.only === null || options.only === 'spawn') {
    log(`(a) spawn → ready, ${options.runs} runs each`);
    spawn = await runSpawnReady({modelPath: model.path, runs: options.runs, threads: 2, contextSize: 2048, heartbeatIntervalMs: 200, warmup: true, log});
  }
  if (options.only === null || options.only === 'routing') {
    log(`(b) routing overhead, ${options.runs} rounds per configuration`);
    routing = await runRoutingOverhead({
      modelPath: model.path,
      rounds: options.runs,
      concurrencies: [1, 16],
      tinyRequests: options.tinyRequests,
      threads: 2,
      parallel: 4,
      contextSize: 1024,
      maxTokens: 64,
      log,
    });
  }
  if (options.only === null || options.only === 'ingest') {
    const windowSeconds = options.quick ? 3 : 10;
    log(`(c) heartbeat ingest, 1k/5k/10k simulated workers, ${windowSeconds} s each`);
    ingest = await runHeartbeatIngest({levels: [1_000, 5_000, 10_000], windowSeconds, warmupSeconds: 2, sockets: 256, log});
  }
  if (options.only === null || options.only === 'crash') {
    log(`(d) crash and hang detection, ${options.runs} rounds each`);
    crash = await runCrashDetection({modelPath: model.path, runs: options.runs, log});
  }
  const wallSeconds = (performance.now() - began) / 1000;
  const loadAfter = os.loadavg().map(value => Math.round(value * 100) / 100);

  const suffix = `${options.only === null ? '' : `-only-${options.only}`}${options.quick ? '-quick' : ''}`;
  const base = `${localDate(started)}-${machineSlug(machine)}${suffix}`;
  fs.mkdirSync(resultsDir, {recursive: true});
  const jsonFile = path.join(resultsDir, `${base}.json`);
  const document: BenchDocument = {
    schema: 'rbee-bench/1',
    date: started.toISOString(),
    command: ['node', '--import', 'tsx', 'bench/run.ts', ...argv].join(' '),
    options: {only: options.only, runs: options.runs, quick: options.quick, tiny_requests: options.tinyRequests},
    wall_seconds: Math.round(wallSeconds),
    load_average: {before: loadBefore, after: loadAfter},
    machine,
    model,
    spawn_ready: spawn,
    routing_overhead: routing,
    heartbeat_ingest: ingest,
    crash_detection: crash,
  };
  fs.writeFileSync(jsonFile, `${JSON.stringify(document, null, 2)}\n`);
  report(document, jsonFile);
}

try {
  await main();
} catch (error) {
  process.stderr.write(`[bench] failed: ${(error as Error).stack ?? String(error)}\n`);
  process.exitCode = 1;
} finally {
  await cleanupAll();
}
// Timers of finished fetches and the deadline are unref'd; nothing else should hold the loop.
