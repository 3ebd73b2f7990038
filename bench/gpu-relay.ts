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
import {profilesOf, summarizeProfile, type ProfileSummary, type Span} from './lib/cpu-profile.js';
import {repoRoot} from './lib/hive-process.js';
import {gpuCardSlug, gpuOfDevice, nvidiaGpus, type GpuInfo} from './lib/gpu-info.js';
import {llamaServerOverheadTables, type ConcurrencyResult, type LlamaServerOverheadResult} from './lib/llama-server-overhead-report.js';
import {localDate, machineInfo, machineSlug, modelInfo, type MachineInfo, type ModelInfo} from './lib/machine.js';
import {median, round} from './lib/stats.js';
import {fmt, fmtRatio, renderMarkdown, renderText, type Table} from './lib/table.js';
import {runLlamaServerOverhead, type LlamaServerOverheadOptions} from './llama-server-overhead.js';

const goal = {tps_ratio: 0.99, ttft_delta_ms: 1};

type Verdict = {
  concurrency: number;
  /** rbee / peer, of the medians (aggregate over rounds, per stream over every stream). */
  aggregate_tps_ratio: number;
  per_stream_tps_ratio: number;
  /** rbee median − peer median, ms; and the median of each round's paired difference of medians. */
  ttft_delta_ms: number;
  ttft_delta_ms_paired: number;
  meets_goal: {tps: boolean; ttft: boolean};
  /** CPU seconds per 1,000 tokens generated, median over the rbee side's batches (the worker-direct side for comparison). */
  cpu_s_per_1k_tokens: {
    via_hive: {hive: number; worker: number; llama_server: number; bench_client: number};
    worker_direct: {worker: number; llama_server: number; bench_client: number} | null;
    peer: {llama_server: number; bench_client: number};
  };
};

type Document = {
  schema: 'rbee-bench-gpu-relay/1';
  date: string;
  command: string;
  wall_seconds: number;
  machine: MachineInfo;
  gpu: GpuInfo | null;
  model: ModelInfo;
  goal: typeof goal;
  verdicts: Verdict[];
  overhead: LlamaServerOverheadResult;
  profile: {note: string; hive: ProfileSummary[]; worker: ProfileSummary[]; streams: number; rounds: number} | null;
};

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

/** CPU s per 1,000 tokens of one side's batches, median over batches. */
function perThousand(entry: ConcurrencyResult, side: 'peer' | 'rbee' | 'worker', pick: (cpu: ConcurrencyResult['batches'][number]['cpu_s']) => number): number {
  const batches = entry.batches.filter(batch => batch.side === side && batch.tokens > 0);
  return round(median(batches.map(batch => (pick(batch.cpu_s) / batch.tokens) * 1000)), 4);
}

function verdictOf(entry: ConcurrencyResult): Verdict {
  const rounds = [...new Set(entry.batches.map(batch => batch.round))];
  const paired = rounds
    .map(roundIndex => {
      const of = (side: 'peer' | 'rbee') => entry.batches.find(batch => batch.round === roundIndex && batch.side === side);
      const rbee = of('rbee');
      const peer = of('peer');
      return rbee === undefined || peer === undefined ? Number.NaN : median(rbee.ttft_ms) - median(peer.ttft_ms);
    })
    .filter(Number.isFinite);
  const ttftDelta = entry.rbee.ttft_ms.median - entry.peer.ttft_ms.median;
  return {
    concurrency: entry.concurrency,
    aggregate_tps_ratio: entry.ratio.aggregate_tps,
    per_stream_tps_ratio: entry.ratio.decode_tps_per_stream,
    ttft_delta_ms: round(ttftDelta, 2),
    ttft_delta_ms_paired: round(median(paired), 2),
    meets_goal: {
      tps: entry.ratio.aggregate_tps >= goal.tps_ratio && entry.ratio.decode_tps_per_stream >= goal.tps_ratio,
      ttft: ttftDelta <= goal.ttft_delta_ms,
    },
    cpu_s_per_1k_tokens: {
      via_hive: {
        hive: perThousand(entry, 'rbee', cpu => cpu.hive),
        worker: perThousand(entry, 'rbee', cpu => cpu.worker),
        llama_server: perThousand(entry, 'rbee', cpu => cpu.worker_server),
        bench_client: perThousand(entry, 'rbee', cpu => cpu.bench_client),
      },
      worker_direct:
        entry.worker === null
          ? null
          : {
              worker: perThousand(entry, 'worker', cpu => cpu.worker),
              llama_server: perThousand(entry, 'worker', cpu => cpu.worker_server),
              bench_client: perThousand(entry, 'worker', cpu => cpu.bench_client),
            },
      peer: {
        llama_server: perThousand(entry, 'peer', cpu => cpu.peer_server),
        bench_client: perThousand(entry, 'peer', cpu => cpu.bench_client),
      },
    },
  };
}

function goalTable(document: Document): Table {
  const label = (concurrency: number) => `${concurrency} stream${concurrency === 1 ? '' : 's'}`;
  const mark = (ok: boolean) => (ok ? 'yes' : 'NO');
  const rows = document.verdicts.flatMap(verdict => {
    const entry = document.overhead.concurrency.find(item => item.concurrency === verdict.concurrency)!;
    return [
      [
        `${label(verdict.concurrency)}: aggregate tok/s`,
        fmt(entry.peer.aggregate_tps.median, 1),
        fmt(entry.rbee.aggregate_tps.median, 1),
        fmtRatio(verdict.aggregate_tps_ratio),
        `≥ ${goal.tps_ratio}×`,
        mark(verdict.aggregate_tps_ratio >= goal.tps_ratio),
      ],
      [
        `${label(verdict.concurrency)}: per-stream decode tok/s`,
        fmt(entry.peer.decode_tps_per_stream.median, 1),
        fmt(entry.rbee.decode_tps_per_stream.median, 1),
        fmtRatio(verdict.per_stream_tps_ratio),
        `≥ ${goal.tps_ratio}×`,
        mark(verdict.per_stream_tps_ratio >= goal.tps_ratio),
      ],
      [
        `${label(verdict.concurrency)}: TTFT ms`,
        fmt(entry.peer.ttft_ms.median, 2),
        fmt(entry.rbee.ttft_ms.median, 2),
        `${verdict.ttft_delta_ms >= 0 ? '+' : ''}${fmt(verdict.ttft_delta_ms, 2)} ms (paired by round ${verdict.ttft_delta_ms_paired >= 0 ? '+' : ''}${fmt(verdict.ttft_delta_ms_paired, 2)})`,
        `≤ +${goal.ttft_delta_ms} ms`,
        mark(verdict.meets_goal.ttft),
      ],
    ];
  });
  const probe = document.overhead.ttft_probe;
  if (probe !== null) {
    rows.push([
      `1 stream, back to back (${probe.rounds} rounds): TTFT ms`,
      fmt(probe.ttft_ms.peer.median, 2),
      fmt(probe.ttft_ms.rbee.median, 2),
      `${probe.added_ms_paired.total >= 0 ? '+' : ''}${fmt(probe.added_ms_paired.total, 2)} ms paired (the worker ${fmt(probe.added_ms_paired.worker, 2)}, the hive ${fmt(probe.added_ms_paired.hive, 2)})`,
      `≤ +${goal.ttft_delta_ms} ms`,
      probe.traced ? 'traced: see the untraced run' : mark(probe.added_ms_paired.total <= goal.ttft_delta_ms),
    ]);
  }
  return {
    title: `Through the hive vs straight to llama-server: the goal (issue 10 §6), medians of ${document.overhead.config.rounds_done} alternating rounds`,
    header: ['measure', 'straight', 'via hive', 'hive vs straight', 'goal', 'met'],
    rows,
    notes: [
      'aggregate tok/s = all tokens of a batch / its wall time, median over rounds; per-stream = (tokens − 1) / (last − first token), median over every stream; TTFT = request sent → first token event, median over every stream.',
      '"paired by round": the median over rounds of (that round\'s hive TTFT median − its straight TTFT median), less sensitive to drift between rounds.',
    ],
  };
}

function cpuTable(document: Document): Table {
  const rows = document.verdicts.flatMap(verdict => {
    const cpu = verdict.cpu_s_per_1k_tokens;
    const name = `${verdict.concurrency} stream${verdict.concurrency === 1 ? '' : 's'}`;
    return [
      [
        name,
        fmt(cpu.peer.llama_server, 3),
        fmt(cpu.via_hive.llama_server, 3),
        fmt(cpu.via_hive.worker, 3),
        fmt(cpu.via_hive.hive, 3),
        cpu.worker_direct === null ? '–' : fmt(cpu.worker_direct.worker, 3),
        fmt(cpu.peer.bench_client, 3),
        fmt(cpu.via_hive.bench_client, 3),
      ],
    ];
  });
  return {
    title: "Where the relay's CPU goes: CPU seconds per 1,000 tokens generated (median over batches)",
    header: [
      'streams',
      'llama-server (straight)',
      'llama-server (via hive)',
      'worker node (via hive)',
      'hive node (via hive)',
      'worker node (worker direct)',
      'client (straight)',
      'client (via hive)',
    ],
    rows,
    notes: [
      "utime + stime from /proc/<pid>/stat over each batch, divided by the tokens the batch generated. The relay is the worker's node (adapter reading llama-server's SSE, writing rbee's) and the hive's node (proxying the worker's stream to the client).",
      "the client is this benchmark's own process: it parses every stream it is sent (rbee events are a little larger than llama-server's).",
    ],
  };
}

function profileTables(profile: NonNullable<Document['profile']>): Table[] {
  const tables: Table[] = [];
  for (const [who, summaries] of [
    ['hive', profile.hive],
    ['worker', profile.worker],
  ] as const) {
    for (const summary of summaries) {
      const busy = summary.span_ms > 0 ? summary.sampled_ms / summary.span_ms : Number.NaN;
      tables.push({
        title: `${who} node process, V8's CPU profiler during ${profile.rounds} batch(es) of ${profile.streams} streams via the hive: top functions by self time${summary.whole_profile ? ' (WHOLE profile: no sample fell in the batches)' : ''}`,
        header: ['function (file:line)', 'self ms', 'share'],
        rows: summary.top_functions.map(cost => [cost.frame, fmt(cost.self_ms, 1), `${fmt(cost.share * 100, 1)} %`]),
        notes: [
          `${summary.samples} samples, ${fmt(summary.sampled_ms, 0)} ms on CPU over ${fmt(summary.span_ms, 0)} ms of batches (${fmt(busy * 100, 0)} % of one core); idle samples left out.`,
          `by file: ${summary.top_files
            .slice(0, 10)
            .map(cost => `${cost.frame} ${fmt(cost.share * 100, 1)} %`)
            .join(', ')}.`,
        ],
      });
    }
  }
  return tables;
}

function writeDocument(document: Document, out: string, stem: string): void {
  fs.mkdirSync(out, {recursive: true});
  const jsonFile = path.join(out, `${stem}.json`);
  const markdownFile = path.join(out, `${stem}.md`);
  fs.writeFileSync(jsonFile, `${JSON.stringify(document, null, 2)}\n`);
  const {machine, gpu, model, overhead} = document;
  const tables = [
    goalTable(document),
    cpuTable(document),
    ...llamaServerOverheadTables(overhead),
    ...(document.profile === null ? [] : profileTables(document.profile)),
  ];
  fs.writeFileSync(
    markdownFile,
    [
      `# rbee relay overhead on ${gpu === null ? `${machine.cpu_model} (no GPU)` : gpu.name}: through the hive vs straight to llama-server, ${document.date.slice(0, 10)}`,
      '',
      '| | |',
      '|:---|:---|',
      `| date | ${document.date} |`,
      `| GPU | ${gpu === null ? 'none' : `${gpu.name}, ${gpu.memory_mib} MiB, driver ${gpu.driver}`} (device ${overhead.config.device}) |`,
      `| CPU | ${machine.cpu_model} × ${machine.cores} (available parallelism ${machine.available_parallelism}), ${machine.memory_gib} GiB |`,
      `| OS | ${machine.platform} ${machine.kernel} ${machine.arch} |`,
      `| Node.js | ${machine.node} |`,
      `| llama.cpp | \`${overhead.llama_cpp.server_path}\`: ${overhead.llama_cpp.version.replaceAll('\n', '; ')} |`,
      `| rbee | ${machine.rbee}${machine.git_commit === null ? '' : ` @ ${machine.git_commit.slice(0, 12)}`} |`,
      `| model | ${model.file} (${model.size_bytes} bytes) |`,
      `| straight (peer) | \`${overhead.peer.argv.join(' ')}\` |`,
      `| via hive: the adapter's llama-server | \`${overhead.rbee.server_argv.join(' ')}\` |`,
      `| command | \`${document.command}\` |`,
      `| wall time | ${document.wall_seconds} s |`,
      '',
      ...tables.flatMap(table => [renderMarkdown(table), '']),
    ].join('\n'),
  );
  process.stdout.write(`\n${tables.map(renderText).join('\n\n')}\n\nwrote ${jsonFile} and ${markdownFile}\n`);
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
    hiveEnv: {NODE_OPTIONS: `--import=${pathToFileURL(path.join(repoRoot, 'bench', 'lib', 'cpu-prof-preload.mjs')).href}`, RBEE_BENCH_CPU_PROF_DIR: dir},
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
