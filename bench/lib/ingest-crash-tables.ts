/** The tables of benchmarks (c) heartbeat ingest and (d) failure detection, for bench/run.ts. */
import type {CrashResult} from '../crash-detection.js';
import type {IngestResult} from '../heartbeat-ingest.js';
import {fmt, type Table} from './table.js';

export function ingestTables(result: IngestResult): Table[] {
  const {config} = result;
  const rows = result.levels.map(level => [
    String(level.workers),
    String(level.target_per_second),
    fmt(level.achieved_per_second, 0),
    `${level.errors} / ${level.skipped}`,
    fmt(level.hive_cpu_percent),
    fmt(level.hive_idle_cpu_percent),
    fmt(level.hive_cpu_us_per_heartbeat),
    fmt(level.latency_ms.p50, 2),
    fmt(level.latency_ms.p99, 2),
    fmt(level.wire_latency_ms.p99, 2),
    level.hive_handling_ms === null ? '–' : fmt(level.hive_handling_ms.p99, 3),
    fmt(level.generator_cpu_percent),
    fmt(level.load_average_1m, 2),
  ]);
  const problems = result.levels
    .filter(level => level.errors + level.skipped > 0)
    .map(level => `${level.workers}: ${JSON.stringify({...level.error_kinds, ...(level.skipped > 0 ? {'skipped (generator backlog)': level.skipped} : {})})}`);
  return [
    {
      title: `(c) heartbeat ingest: one hive, N simulated workers × 1 heartbeat/s (${config.window_seconds} s window after ${config.warmup_seconds} s warm-up, ${config.sockets} keep-alive connections)`,
      header: [
        'workers',
        'target/s',
        'achieved/s',
        'errors / skipped',
        'hive CPU %',
        'idle CPU %',
        'hive CPU µs/hb',
        'client p50 ms',
        'client p99 ms',
        'wire p99 ms',
        'handler p99 ms',
        'generator CPU %',
        'load 1m',
      ],
      rows,
      notes: [
        'hive CPU % is of one core: Δ(utime + stime) of the hive process (/proc/<pid>/stat) over the window ÷ wall time; µs/hb is that CPU time per heartbeat answered; idle = the same hive with its N workers registered and no heartbeats, over 2 s before the load.',
        "The load generator is one Node process on the same 2 cores as the hive (its own CPU is the generator column): at the higher levels the two compete, so latency there is partly the generator's and the other processes' (load 1m) doing.",
        'client = request issued → answer read (includes waiting for one of the pooled connections); wire = request flushed to its socket → answer read.',
        "handler p99 = the hive's own rbee_heartbeat_handling_seconds (validation, secret check, state update; not HTTP parsing), Δ over the window, interpolated within its 0.1/0.5/1/5 ms buckets.",
        ...(problems.length === 0 ? ['no errors, nothing skipped.'] : [`errors and skips by level: ${problems.join('; ')}.`]),
      ],
    },
  ];
}

export function crashTables(result: CrashResult): Table[] {
  const {config} = result;
  const row = (event: string, hive: string, summary: {n: number; median: number; p90: number; min: number; max: number}, expected: string) => [
    event,
    hive,
    String(summary.n),
    fmt(summary.median),
    fmt(summary.p90),
    fmt(summary.min),
    fmt(summary.max),
    expected,
  ];
  const crashWatchdog = result.hang.find(hang => hang.hive_heartbeat_interval_ms === result.crash.hive_heartbeat_interval_ms)?.watchdog_period_ms;
  const rows = [
    row(
      `kill -9 → not ready (worker heartbeat ${config.crash_heartbeat_interval_ms} ms)`,
      `${result.crash.hive_heartbeat_interval_ms} ms / ${crashWatchdog ?? '?'} ms`,
      result.crash.detect_ms,
      'process exit + a few ms',
    ),
    row('  kill -9 → reaped by the hive (gone from /proc)', '–', result.crash.reaped_ms, 'kernel teardown'),
    ...result.hang.flatMap(hang => [
      row(
        `SIGSTOP → not ready (worker heartbeat ${config.hang_heartbeat_interval_ms} ms)`,
        `${hang.hive_heartbeat_interval_ms} ms / ${hang.watchdog_period_ms} ms`,
        hang.detect_ms,
        `3 × ${config.hang_heartbeat_interval_ms} + ≤ ${hang.watchdog_period_ms} tick + kill`,
      ),
      row(
        '  last heartbeat → not ready',
        `${hang.hive_heartbeat_interval_ms} ms / ${hang.watchdog_period_ms} ms`,
        hang.from_last_heartbeat_ms,
        `${3 * config.hang_heartbeat_interval_ms}–${3 * config.hang_heartbeat_interval_ms + hang.watchdog_period_ms} + kill`,
      ),
    ]),
  ];
  const all = [...result.crash.samples, ...result.hang.flatMap(hang => hang.samples)];
  const states = [...new Set(all.map(sample => sample.state))].join(', ');
  const leaked = all.filter(sample => !sample.group_gone).length;
  return [
    {
      title: `(d) failure detection, ms (worker threads 1, parallel 1, context 512, restart never; ${config.runs} rounds each, a fresh worker per round)`,
      header: ['event', 'hive heartbeat / watchdog', 'n', 'median', 'p90', 'min', 'max', 'expected'],
      rows,
      notes: [
        `Time from the signal to the first GET /v1/workers/:id (${config.poll_interval_ms} ms between polls) whose state is neither ready nor busy; states seen: ${states}.`,
        `A killed worker is noticed from its exit, which the kernel reports to the hive only once all its threads are gone and its address space (the mapped model) is torn down; from the reap to the hive answering "not ready" (median − median, one poll round trip included): ${fmt(result.crash.detect_ms.median - result.crash.reaped_ms.median)} ms.`,
        "A hung worker is noticed only on a watchdog tick after 3 missed heartbeats, then SIGKILLed, so its detection also includes the kill → reap time of the first row. The watchdog runs every half of the hive's own heartbeat interval (50..1000 ms), whatever the worker's interval: a 500 ms worker on a default hive waits for 1000 ms ticks.",
        leaked === 0
          ? "Every worker's process group was gone within 5 s of the detection."
          : `${leaked} worker process group(s) were still alive 5 s after the detection.`,
      ],
    },
  ];
}
