/**
 * What bench (e) (llama-server alone vs behind rbee) records and how it is shown: the result types,
 * the per-side summaries and ratios, and the tables. Shared by llama-server-overhead.ts (CPU) and
 * gpu-relay.ts (the same comparison on a GPU machine).
 */
import type {TimedStream} from './sse-timing.js';
import {ttftProbeTables, type TtftProbeResult} from './ttft-probe.js';
import {median, ratio, round, roundSummary, summarize, type Summary} from './stats.js';
import {fmt, fmtRatio, type Table} from './table.js';

export type Side = 'peer' | 'rbee' | 'worker';

export type CpuSample = {peer_server: number; hive: number; worker: number; worker_server: number; bench_client: number; machine_busy: number; steal: number};

export type Batch = {
  round: number;
  side: Side;
  concurrency: number;
  wall_ms: number;
  tokens: number;
  aggregate_tps: number;
  streams: TimedStream[];
  /** CPU seconds spent during the batch, by process; `foreign` = machine busy − every process listed − this client. */
  cpu_s: CpuSample & {foreign: number; idle_side: number};
  /** How long the batch waited for a quiet machine, and what other processes used when it started (cores). */
  quiet: {waited_ms: number; foreign_cores: number};
  /** Δ of the measured llama-server's /metrics over the batch. */
  server: {decode_calls: number; busy_slots_per_decode: number; tokens_predicted: number; prompt_tokens: number; max_processing: number; max_deferred: number};
};

export type SideSummary = {
  batches: number;
  ttft_ms: Summary;
  decode_tps_per_stream: Summary;
  aggregate_tps: Summary;
  tokens_per_stream: Summary;
  /** last token event → closing event (llama-server stop / rbee done), per stream. */
  close_after_last_token_ms: Summary;
  batch_wall_ms: Summary;
  /** Medians over batches. */
  cpu_s_per_batch: {llama_server: number; worker: number; hive: number; bench_client: number; idle_side: number; foreign: number};
  server: {decode_calls: number; busy_slots_per_decode: number; prompt_tokens: number; max_processing: number; max_deferred: number};
};

export type ConcurrencyResult = {
  concurrency: number;
  rounds: number;
  peer: SideSummary;
  rbee: SideSummary;
  worker: SideSummary | null;
  /** rbee / peer, of the medians: > 1 for TTFT means rbee is slower; < 1 for tok/s means it is slower. */
  ratio: {ttft: number; decode_tps_per_stream: number; aggregate_tps: number};
  /** worker direct / peer (what the adapter and worker cost) and rbee / worker direct (what the hive adds). */
  breakdown: {
    worker_over_peer: {ttft: number; decode_tps_per_stream: number; aggregate_tps: number};
    rbee_over_worker: {ttft: number; decode_tps_per_stream: number; aggregate_tps: number};
  } | null;
  /** Recorded batches where other processes used over a quarter of a core on average (the medians absorb one or two). */
  disturbed: Array<{round: number; side: Side; foreign_cores: number}>;
  /** Disturbed tries that were run again, left out of every median. */
  discarded: Array<{round: number; side: Side; foreign_cores: number; wall_ms: number; aggregate_tps: number; ttft_ms_median: number}>;
  batches: Array<Omit<Batch, 'streams'> & {ttft_ms: number[]; decode_tps: number[]; tokens_per_stream: number[]}>;
};

export type LlamaServerOverheadResult = {
  config: {
    threads: number | null;
    device: string;
    parallel: number;
    context_size_per_sequence: number;
    max_tokens: number;
    temperature: 0;
    seed: 1;
    prompt: string;
    /** Rounds asked for, and rounds run (fewer when the time budget ran out). */
    rounds: number;
    rounds_done: number;
    concurrencies: number[];
    worker_direct: boolean;
    mode: string;
    quiet_gate: {cores: number; max_wait_ms: number; retries_of_disturbed_batches: number; retry_budget_ms: number};
  };
  llama_cpp: {server_path: string; version: string; cached_build: string | null};
  peer: {argv: string[]; pid: number; ready_ms: number};
  rbee: {hive_pid: number; worker_id: string; worker_pid: number; worker_ready_ms: number; server_pid: number; server_argv: string[]; config: unknown};
  /** The adapter's llama-server arguments as bench expected them from adapters/llamacpp (port aside). */
  adapter_args: {expected: string[]; matched: boolean};
  concurrency: ConcurrencyResult[];
  /** Short requests one at a time, back to back, after the rounds (none unless asked). */
  ttft_probe: TtftProbeResult | null;
  stop_ms: {peer: number; hive: number};
  leaks: string[];
};

export function summarizeSide(batches: Batch[], side: Side): SideSummary {
  const streams = batches.flatMap(entry => entry.streams);
  const cpu = (pick: (batch: Batch) => number) => round(median(batches.map(pick)), 3);
  return {
    batches: batches.length,
    ttft_ms: roundSummary(summarize(streams.map(stream => stream.ttftMs)), 1),
    decode_tps_per_stream: roundSummary(summarize(streams.map(stream => stream.decodeTokensPerSecond)), 2),
    aggregate_tps: roundSummary(summarize(batches.map(entry => entry.aggregate_tps)), 2),
    tokens_per_stream: roundSummary(summarize(streams.map(stream => stream.tokens)), 1),
    close_after_last_token_ms: roundSummary(summarize(streams.map(stream => stream.endMs - stream.lastTokenMs)), 2),
    batch_wall_ms: roundSummary(summarize(batches.map(entry => entry.wall_ms)), 1),
    cpu_s_per_batch: {
      llama_server: cpu(batch => (side === 'peer' ? batch.cpu_s.peer_server : batch.cpu_s.worker_server)),
      worker: side === 'peer' ? Number.NaN : cpu(batch => batch.cpu_s.worker),
      hive: side === 'peer' ? Number.NaN : cpu(batch => batch.cpu_s.hive),
      bench_client: cpu(batch => batch.cpu_s.bench_client),
      idle_side: cpu(batch => batch.cpu_s.idle_side),
      foreign: cpu(batch => batch.cpu_s.foreign),
    },
    server: {
      decode_calls: round(median(batches.map(batch => batch.server.decode_calls)), 1),
      busy_slots_per_decode: round(median(batches.map(batch => batch.server.busy_slots_per_decode)), 3),
      prompt_tokens: round(median(batches.map(batch => batch.server.prompt_tokens)), 1),
      max_processing: Math.max(...batches.map(batch => batch.server.max_processing)),
      max_deferred: Math.max(...batches.map(batch => batch.server.max_deferred)),
    },
  };
}

export function ratios(numerator: SideSummary, denominator: SideSummary) {
  return {
    ttft: round(ratio(numerator.ttft_ms.median, denominator.ttft_ms.median), 3),
    decode_tps_per_stream: round(ratio(numerator.decode_tps_per_stream.median, denominator.decode_tps_per_stream.median), 3),
    aggregate_tps: round(ratio(numerator.aggregate_tps.median, denominator.aggregate_tps.median), 3),
  };
}

/** The tables, for run.ts or this file's own report. */
export function llamaServerOverheadTables(result: LlamaServerOverheadResult): Table[] {
  const {config} = result;
  const label = (concurrency: number) => `${concurrency} stream${concurrency === 1 ? '' : 's'}`;
  const headline: string[][] = [];
  for (const entry of result.concurrency) {
    const {peer, rbee} = entry;
    headline.push(
      [
        `${label(entry.concurrency)}: TTFT ms`,
        fmt(peer.ttft_ms.median),
        fmt(peer.ttft_ms.p90),
        fmt(rbee.ttft_ms.median),
        fmt(rbee.ttft_ms.p90),
        fmtRatio(entry.ratio.ttft),
      ],
      [
        `${label(entry.concurrency)}: per-stream decode tok/s`,
        fmt(peer.decode_tps_per_stream.median, 2),
        fmt(peer.decode_tps_per_stream.p90, 2),
        fmt(rbee.decode_tps_per_stream.median, 2),
        fmt(rbee.decode_tps_per_stream.p90, 2),
        fmtRatio(entry.ratio.decode_tps_per_stream),
      ],
      [
        `${label(entry.concurrency)}: aggregate tok/s`,
        fmt(peer.aggregate_tps.median, 2),
        fmt(peer.aggregate_tps.p90, 2),
        fmt(rbee.aggregate_tps.median, 2),
        fmt(rbee.aggregate_tps.p90, 2),
        fmtRatio(entry.ratio.aggregate_tps),
      ],
    );
  }
  const tokens = result.concurrency
    .map(entry => `${entry.concurrency}: ${fmt(entry.peer.tokens_per_stream.median, 0)}/${fmt(entry.rbee.tokens_per_stream.median, 0)}`)
    .join(', ');
  const disturbed = result.concurrency.flatMap(entry =>
    entry.disturbed.map(batch => `${entry.concurrency} streams, round ${batch.round + 1} ${batch.side} (${fmt(batch.foreign_cores, 2)} cores)`),
  );
  const discardedCount = result.concurrency.reduce((sum, entry) => sum + entry.discarded.length, 0);
  const allBatches = result.concurrency.flatMap(entry => entry.batches);
  const waitedSeconds = allBatches.reduce((sum, batch) => sum + batch.quiet.waited_ms, 0) / 1000;
  const unquiet = allBatches.filter(batch => batch.quiet.foreign_cores > config.quiet_gate.cores).length;
  const idle = result.concurrency
    .map(
      entry =>
        `${entry.concurrency}: rbee idle during peer batches ${fmt(entry.peer.cpu_s_per_batch.idle_side, 3)} s, peer idle during rbee batches ${fmt(entry.rbee.cpu_s_per_batch.idle_side, 3)} s`,
    )
    .join('; ');
  const tables: Table[] = [
    {
      title: `(e) llama-server alone (peer) vs behind rbee: adapter + worker + hive (${config.device}, threads ${config.threads ?? "llama-server's default"}, parallel ${config.parallel}, context ${config.context_size_per_sequence}/sequence = --ctx-size ${config.context_size_per_sequence * config.parallel}, ${config.max_tokens} tokens; ${config.rounds_done} rounds each, alternating${config.rounds_done < config.rounds ? `: ${config.rounds} asked, the time budget ran out` : ''})`,
      header: ['measure', 'peer median', 'peer p90', 'rbee median', 'rbee p90', 'rbee/peer'],
      rows: headline,
      notes: [
        `peer = streaming POST /completion to a llama-server started with the adapter's own argument list (port aside); rbee = streaming POST /v1/infer through the hive to a worker whose adapter runs the same llama-server build.`,
        `TTFT and per-stream medians are over every stream of every round; aggregate medians over rounds. tok/s ratios < 1 and TTFT ratios > 1 mean rbee is slower.`,
        `median tokens per stream (peer/rbee), by streams: ${tokens}.`,
        `both stacks stay up; the one not asked is idle. Median CPU of the idle side per batch: ${idle}.`,
        `adapter arguments as expected from adapters/llamacpp: ${result.adapter_args.matched ? 'yes' : 'NO (see the JSON)'}; llama-server ${result.llama_cpp.version.split('\n')[0]}.`,
        `before each batch the run waited until other processes used under ${config.quiet_gate.cores} of a core (at most ${config.quiet_gate.max_wait_ms / 1000} s): ${fmt(waitedSeconds, 1)} s in all; ${unquiet} of ${allBatches.length} recorded batches started without it.`,
        `disturbed tries (other processes above ${config.quiet_gate.cores} of a core during the batch) run again and left out of the medians: ${discardedCount} (at most ${config.quiet_gate.retries_of_disturbed_batches} per batch and ${fmt(config.quiet_gate.retry_budget_ms / 60_000, 0)} min in all; the JSON keeps them).`,
        ...(disturbed.length === 0
          ? []
          : [`recorded batches still disturbed after the retries (medians absorb one or two, p90s do not): ${disturbed.join('; ')}.`]),
      ],
    },
  ];

  if (result.concurrency.every(entry => entry.worker !== null)) {
    const rows: string[][] = [];
    const dash = '–';
    for (const entry of result.concurrency) {
      const {peer, rbee} = entry;
      const worker = entry.worker!;
      const breakdown = entry.breakdown!;
      const name = label(entry.concurrency);
      rows.push(
        [
          `${name}: TTFT ms`,
          fmt(peer.ttft_ms.median),
          fmt(worker.ttft_ms.median),
          fmt(rbee.ttft_ms.median),
          fmtRatio(breakdown.worker_over_peer.ttft),
          fmtRatio(breakdown.rbee_over_worker.ttft),
        ],
        [
          `${name}: per-stream decode tok/s`,
          fmt(peer.decode_tps_per_stream.median, 2),
          fmt(worker.decode_tps_per_stream.median, 2),
          fmt(rbee.decode_tps_per_stream.median, 2),
          fmtRatio(breakdown.worker_over_peer.decode_tps_per_stream),
          fmtRatio(breakdown.rbee_over_worker.decode_tps_per_stream),
        ],
        [
          `${name}: aggregate tok/s`,
          fmt(peer.aggregate_tps.median, 2),
          fmt(worker.aggregate_tps.median, 2),
          fmt(rbee.aggregate_tps.median, 2),
          fmtRatio(breakdown.worker_over_peer.aggregate_tps),
          fmtRatio(breakdown.rbee_over_worker.aggregate_tps),
        ],
        [
          `${name}: last token → closing event ms`,
          fmt(peer.close_after_last_token_ms.median, 2),
          fmt(worker.close_after_last_token_ms.median, 2),
          fmt(rbee.close_after_last_token_ms.median, 2),
          dash,
          dash,
        ],
        [
          `${name}: llama-server busy slots per decode`,
          fmt(peer.server.busy_slots_per_decode, 2),
          fmt(worker.server.busy_slots_per_decode, 2),
          fmt(rbee.server.busy_slots_per_decode, 2),
          fmtRatio(ratio(worker.server.busy_slots_per_decode, peer.server.busy_slots_per_decode)),
          fmtRatio(ratio(rbee.server.busy_slots_per_decode, worker.server.busy_slots_per_decode)),
        ],
        [
          `${name}: llama-server decode calls per batch`,
          fmt(peer.server.decode_calls, 0),
          fmt(worker.server.decode_calls, 0),
          fmt(rbee.server.decode_calls, 0),
          fmtRatio(ratio(worker.server.decode_calls, peer.server.decode_calls)),
          fmtRatio(ratio(rbee.server.decode_calls, worker.server.decode_calls)),
        ],
        [
          `${name}: llama-server processing / deferred, max seen`,
          `${peer.server.max_processing} / ${peer.server.max_deferred}`,
          `${worker.server.max_processing} / ${worker.server.max_deferred}`,
          `${rbee.server.max_processing} / ${rbee.server.max_deferred}`,
          dash,
          dash,
        ],
        [
          `${name}: CPU s/batch, llama-server`,
          fmt(peer.cpu_s_per_batch.llama_server, 2),
          fmt(worker.cpu_s_per_batch.llama_server, 2),
          fmt(rbee.cpu_s_per_batch.llama_server, 2),
          fmtRatio(ratio(worker.cpu_s_per_batch.llama_server, peer.cpu_s_per_batch.llama_server)),
          fmtRatio(ratio(rbee.cpu_s_per_batch.llama_server, worker.cpu_s_per_batch.llama_server)),
        ],
        [`${name}: CPU s/batch, worker (node)`, dash, fmt(worker.cpu_s_per_batch.worker, 2), fmt(rbee.cpu_s_per_batch.worker, 2), dash, dash],
        [`${name}: CPU s/batch, hive (node)`, dash, fmt(worker.cpu_s_per_batch.hive, 2), fmt(rbee.cpu_s_per_batch.hive, 2), dash, dash],
        [
          `${name}: CPU s/batch, bench client`,
          fmt(peer.cpu_s_per_batch.bench_client, 2),
          fmt(worker.cpu_s_per_batch.bench_client, 2),
          fmt(rbee.cpu_s_per_batch.bench_client, 2),
          dash,
          dash,
        ],
      );
    }
    tables.push({
      title: `(e) where rbee's cost lies: peer vs the worker asked directly (adapter + worker) vs through the hive (medians)`,
      header: ['measure', 'peer', 'worker direct', 'via hive', 'worker/peer', 'hive/worker'],
      rows,
      notes: [
        "worker direct = streaming POST /v1/infer at the worker's own port: the llamacpp adapter and the worker process, no hive.",
        "busy slots per decode and decode calls are Δ of llama-server's own /metrics over each batch (n_busy_slots_per_decode × n_decode_total); with 16 streams on 4 slots, 4.00 would be full batches all the time.",
        "processing / deferred: the most requests llama-server's /metrics showed in its slots and in its own queue, sampled once a second during the batches; rbee's worker holds requests beyond its parallel in its own queue, so llama-server never defers them.",
        "last token → closing event: how long after its last token a stream is told it is done (llama-server's stop event; rbee's done event, sent once the adapter has read llama-server's).",
        "CPU s/batch from /proc/<pid>/stat; the worker direct side runs no hive code, so its hive CPU is the idle hive's.",
      ],
    });
  }
  if (result.ttft_probe !== null) {
    tables.push(...ttftProbeTables(result.ttft_probe));
  }
  return tables;
}
