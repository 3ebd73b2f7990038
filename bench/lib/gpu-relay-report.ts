/**
 * What bench/gpu-relay.ts records and how it reads: the goal of issue 10 §6, each stream count's
 * verdict (ratios, TTFT deltas, CPU per 1,000 tokens), and the JSON and Markdown it writes.
 */
import fs from 'node:fs';
import path from 'node:path';
import type {ProfileSummary} from './cpu-profile.js';
import type {GpuInfo} from './gpu-info.js';
import {llamaServerOverheadTables, type ConcurrencyResult, type LlamaServerOverheadResult} from './llama-server-overhead-report.js';
import type {MachineInfo, ModelInfo} from './machine.js';
import {median, round} from './stats.js';
import {fmt, fmtRatio, renderMarkdown, renderText, type Table} from './table.js';

export const goal = {tps_ratio: 0.99, ttft_delta_ms: 1};

export type Verdict = {
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

export type Document = {
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

/** CPU s per 1,000 tokens of one side's batches, median over batches. */
function perThousand(entry: ConcurrencyResult, side: 'peer' | 'rbee' | 'worker', pick: (cpu: ConcurrencyResult['batches'][number]['cpu_s']) => number): number {
  const batches = entry.batches.filter(batch => batch.side === side && batch.tokens > 0);
  return round(median(batches.map(batch => (pick(batch.cpu_s) / batch.tokens) * 1000)), 4);
}

export function verdictOf(entry: ConcurrencyResult): Verdict {
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

export function writeDocument(document: Document, out: string, stem: string): void {
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
