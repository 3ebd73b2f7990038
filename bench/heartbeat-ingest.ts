/**
 * (c) Heartbeat ingest: how much of a core one hive spends hearing 1k, 5k and 10k workers that
 * each heartbeat once a second, and how fast it answers them.
 *
 * Per level, a fresh hive process (bench/lib/ingest-hive.ts) with N simulated workers registered;
 * this process is the load generator: each worker's standard heartbeat payload, with its
 * x-rbee-worker-secret, POSTed over a pool of keep-alive connections, N a second spread evenly
 * (worker k at k/N of each second). After a warm-up, a window of W seconds is measured:
 *   hive CPU      = Δ(utime + stime) of the hive from /proc/<pid>/stat ÷ wall time (% of one core);
 *                   also over 2 s before the load, N workers registered and silent (idle)
 *   latency       = request issued → answer read, client side (includes waiting for a pooled socket)
 *   achieved      = 200 answers to heartbeats scheduled in the window ÷ W
 *   hive handling = p50/p99 of the hive's own rbee_heartbeat_handling_seconds histogram (Δ over the
 *                   window; bucket-interpolated, so only as fine as its 0.1/0.5/1/5 ms buckets)
 * The generator runs on the same 2 cores as the hive: its CPU is reported beside the hive's.
 */
import {spawn} from 'node:child_process';
import http from 'node:http';
import os from 'node:os';
import {fileURLToPath} from 'node:url';
import {HiveClient} from '../src/protocol/hive-client.js';
import {hiveRoutes} from '../src/protocol/hive-routes.js';
import {HeartbeatSchema, type Heartbeat} from '../src/protocol/wire.js';
import {workerSecretHeader} from '../src/worker/heartbeat-loop.js';
import {onCleanup} from './lib/cleanup.js';
import {repoRoot} from './lib/hive-process.js';
import {sleep} from './lib/http.js';
import {ownCpuSeconds, processCpuSeconds} from './lib/proc-cpu.js';
import {histogramDelta, histogramQuantile, parseHistogram, type Histogram} from './lib/prom-histogram.js';
import {quantile, round} from './lib/stats.js';

const ingestHiveScript = fileURLToPath(new URL('./lib/ingest-hive.ts', import.meta.url));

export type IngestOptions = {levels: number[]; windowSeconds: number; warmupSeconds: number; sockets: number; log: (message: string) => void};

type Quantiles = {n: number; p50: number; p90: number; p99: number; max: number};

export type IngestLevel = {
  workers: number;
  target_per_second: number;
  window_seconds: number;
  /** Heartbeats scheduled in the window and sent. */
  sent: number;
  ok: number;
  errors: number;
  error_kinds: Record<string, number>;
  /** Scheduled but never sent: more than `max_pending` were already waiting for a socket. */
  skipped: number;
  achieved_per_second: number;
  hive_cpu_percent: number;
  /** The same hive with its N workers registered and no heartbeats arriving (the watchdog's sweeps), over 2 s. */
  hive_idle_cpu_percent: number;
  /** Hive CPU time per heartbeat answered, µs. */
  hive_cpu_us_per_heartbeat: number;
  generator_cpu_percent: number;
  latency_ms: Quantiles;
  /** Request flushed to its socket → answer read: the same without the wait for a pooled socket. */
  wire_latency_ms: Quantiles;
  /** 1-minute load average when the level started: other work on the machine skews every number here. */
  load_average_1m: number;
  /** How late the generator sent each heartbeat against its schedule (its own backlog). */
  send_lag_ms: Quantiles;
  hive_handling_ms: {count: number; p50: number; p99: number; mean: number} | null;
};

export type IngestResult = {
  config: {levels: number[]; window_seconds: number; warmup_seconds: number; sockets: number; max_pending: number; heartbeats_per_worker_per_second: 1};
  levels: IngestLevel[];
};

const maxPending = 20_000;

type IngestHive = {url: string; pid: number; workers: Array<{id: string; secret: string}>; stop(): Promise<void>};

async function startIngestHive(workers: number): Promise<IngestHive> {
  const env: NodeJS.ProcessEnv = Object.fromEntries(Object.entries(process.env).filter(([key]) => !key.startsWith('RBEE_')));
  const child = spawn(process.execPath, ['--import', 'tsx', ingestHiveScript, String(workers)], {cwd: repoRoot, env, stdio: ['ignore', 'pipe', 'pipe']});
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', chunk => {
    stdout += String(chunk);
  });
  child.stderr.on('data', chunk => {
    stderr = (stderr + String(chunk)).slice(-16_384);
  });
  const exited = new Promise<void>(resolve => child.once('exit', () => resolve()));
  let gone = false;
  void exited.then(() => {
    gone = true;
  });
  const stop = async () => {
    if (!gone) {
      child.kill('SIGTERM');
      const killer = setTimeout(() => child.kill('SIGKILL'), 15_000);
      await exited;
      clearTimeout(killer);
    }
    unregister();
  };
  const unregister = onCleanup(`ingest hive ${child.pid}`, stop);
  const deadline = performance.now() + 60_000;
  while (!stdout.includes('\n')) {
    if (gone || performance.now() > deadline) {
      await stop();
      throw new Error(`the ingest hive did not start: ${stderr}`);
    }
    await sleep(20);
  }
  const started = JSON.parse(stdout.slice(0, stdout.indexOf('\n'))) as Omit<IngestHive, 'stop'>;
  return {...started, stop};
}

/** The standard fields a real llama.cpp worker sends (src/worker/worker-runtime.ts), for one simulated worker. */
function payload(id: string, index: number): Heartbeat {
  return HeartbeatSchema.parse({
    worker_id: id,
    status: 'ready',
    model: 'bench-sim',
    device: 'cpu',
    vram_used: 0,
    vram_total: 0,
    ram_used: 400_000_000 + index,
    requests_total: index,
    tokens_generated: 10 * index,
    uptime_seconds: 3_600,
    last_request_at: null,
    adapter_type: 'llamacpp',
    backend: 'cpu',
    threads: 1,
    queue_depth: 0,
    batch_size: 0,
    throughput_tokens_per_second: 0,
  });
}

async function scrape(url: string): Promise<Histogram | null> {
  return parseHistogram(await new HiveClient({url}).metrics({timeoutMs: 30_000}), 'rbee_heartbeat_handling_seconds');
}

function quantiles(values: number[]): Quantiles {
  const sorted = [...values].sort((a, b) => a - b);
  return {
    n: sorted.length,
    p50: round(quantile(sorted, 0.5), 3),
    p90: round(quantile(sorted, 0.9), 3),
    p99: round(quantile(sorted, 0.99), 3),
    max: round(sorted.at(-1) ?? Number.NaN, 3),
  };
}

async function measureLevel(hive: IngestHive, options: IngestOptions): Promise<IngestLevel> {
  const workers = hive.workers.length;
  // The load itself is raw keep-alive http (the thing measured is the hive's ingest, not a client).
  const target = new URL(hiveRoutes.heartbeat.path, hive.url);
  const agent = new http.Agent({keepAlive: true, maxSockets: options.sockets});
  const requests = hive.workers.map(({id, secret}, index) => {
    const body = Buffer.from(JSON.stringify(payload(id, index)));
    return {body, headers: {'content-type': 'application/json', 'content-length': body.length, [workerSecretHeader]: secret}};
  });

  let windowStart = Number.POSITIVE_INFINITY;
  let windowEnd = Number.POSITIVE_INFINITY;
  let pending = 0;
  let sent = 0;
  let ok = 0;
  let skipped = 0;
  const errorKinds: Record<string, number> = {};
  const latencies: number[] = [];
  const wireLatencies: number[] = [];
  const lags: number[] = [];
  const inWindow = (scheduledAt: number) => scheduledAt >= windowStart && scheduledAt < windowEnd;
  const fail = (scheduledAt: number, kind: string) => {
    if (inWindow(scheduledAt)) {
      errorKinds[kind] = (errorKinds[kind] ?? 0) + 1;
    }
  };

  const send = (index: number, scheduledAt: number) => {
    const {body, headers} = requests[index % workers]!;
    const issuedAt = performance.now();
    if (inWindow(scheduledAt)) {
      sent++;
      lags.push(issuedAt - scheduledAt);
    }
    pending++;
    let settled = false;
    let flushedAt = Number.NaN;
    const settle = (kind: string | null) => {
      if (settled) return;
      settled = true;
      pending--;
      if (kind !== null) {
        fail(scheduledAt, kind);
      } else if (inWindow(scheduledAt)) {
        ok++;
        const now = performance.now();
        latencies.push(now - issuedAt);
        wireLatencies.push(now - flushedAt);
      }
    };
    const request = http.request({host: target.hostname, port: target.port, path: target.pathname, method: 'POST', agent, headers}, response => {
      response.on('data', () => undefined);
      response.on('end', () => settle(response.statusCode === 200 ? null : `HTTP ${response.statusCode}`));
      response.on('error', error => settle(error.message));
    });
    request.setTimeout(10_000, () => request.destroy(new Error('no answer within 10 s')));
    request.on('error', error => settle(error.message));
    request.on('finish', () => {
      flushedAt = performance.now();
    });
    request.end(body);
  };

  const loadAverage = round(os.loadavg()[0] ?? Number.NaN, 2);
  const idleFrom = {cpu: processCpuSeconds(hive.pid), wall: performance.now()};
  await sleep(2_000);
  const idleCpuPercent = (100 * (processCpuSeconds(hive.pid) - idleFrom.cpu)) / ((performance.now() - idleFrom.wall) / 1_000);
  const spacingMs = 1_000 / workers;
  const began = performance.now();
  let next = 0;
  let before: Promise<Histogram | null> | null = null;
  let histogramBefore: Histogram | null = null;
  let cpuAt = {hive: 0, own: 0, wall: 0};
  let cpuEnd = {hive: 0, own: 0, wall: 0};
  for (;;) {
    const now = performance.now();
    if (before === null && now - began >= options.warmupSeconds * 1_000) {
      // The scrape costs the hive CPU (7 gauges × N workers): the window opens once it is answered.
      before = scrape(hive.url).then(histogram => {
        histogramBefore = histogram;
        windowStart = performance.now();
        windowEnd = windowStart + options.windowSeconds * 1_000;
        cpuAt = {hive: processCpuSeconds(hive.pid), own: ownCpuSeconds(), wall: windowStart};
        return histogram;
      });
    }
    if (now >= windowEnd) {
      cpuEnd = {hive: processCpuSeconds(hive.pid), own: ownCpuSeconds(), wall: now};
      break;
    }
    for (const due = Math.floor((now - began) / spacingMs); next < due; next++) {
      const scheduledAt = began + next * spacingMs;
      if (pending >= maxPending) {
        if (inWindow(scheduledAt)) skipped++;
        continue;
      }
      send(next, scheduledAt);
    }
    // A 1 ms timer, not a busy loop: the generator must leave the hive as much CPU as it can.
    await sleep(1);
  }
  const drainDeadline = performance.now() + 15_000;
  while (pending > 0 && performance.now() < drainDeadline) {
    await sleep(10);
  }
  const histogramAfter = await scrape(hive.url);
  agent.destroy();
  const wallSeconds = (cpuEnd.wall - cpuAt.wall) / 1_000;
  const stillPending = sent - ok - Object.values(errorKinds).reduce((sum, count) => sum + count, 0);
  if (stillPending > 0) {
    errorKinds['still pending after 15 s'] = stillPending;
  }
  const handled = histogramAfter !== null && histogramBefore !== null ? histogramDelta(histogramAfter, histogramBefore) : null;
  const hiveCpuSeconds = cpuEnd.hive - cpuAt.hive;
  return {
    workers,
    target_per_second: workers,
    window_seconds: round(wallSeconds, 3),
    sent,
    ok,
    errors: sent - ok,
    error_kinds: errorKinds,
    skipped,
    achieved_per_second: round(ok / wallSeconds, 1),
    hive_cpu_percent: round((100 * hiveCpuSeconds) / wallSeconds, 1),
    hive_idle_cpu_percent: round(idleCpuPercent, 1),
    hive_cpu_us_per_heartbeat: round((hiveCpuSeconds * 1e6) / Math.max(1, ok), 1),
    generator_cpu_percent: round((100 * (cpuEnd.own - cpuAt.own)) / wallSeconds, 1),
    latency_ms: quantiles(latencies),
    wire_latency_ms: quantiles(wireLatencies),
    load_average_1m: loadAverage,
    send_lag_ms: quantiles(lags),
    hive_handling_ms:
      handled === null || handled.count === 0
        ? null
        : {
            count: handled.count,
            p50: round(histogramQuantile(0.5, handled) * 1_000, 3),
            p99: round(histogramQuantile(0.99, handled) * 1_000, 3),
            mean: round((handled.sum / handled.count) * 1_000, 4),
          },
  };
}

export async function runHeartbeatIngest(options: IngestOptions): Promise<IngestResult> {
  const levels: IngestLevel[] = [];
  for (const workers of options.levels) {
    const hive = await startIngestHive(workers);
    options.log(
      `ingest: ${workers} simulated workers on hive ${hive.url} (pid ${hive.pid}); ${options.warmupSeconds} s warm-up, ${options.windowSeconds} s window`,
    );
    try {
      const level = await measureLevel(hive, options);
      options.log(
        `ingest ${workers}: ${level.achieved_per_second}/s achieved, hive CPU ${level.hive_cpu_percent}%, p99 ${level.latency_ms.p99} ms, ${level.errors} errors, ${level.skipped} skipped`,
      );
      levels.push(level);
    } finally {
      await hive.stop();
    }
  }
  return {
    config: {
      levels: options.levels,
      window_seconds: options.windowSeconds,
      warmup_seconds: options.warmupSeconds,
      sockets: options.sockets,
      max_pending: maxPending,
      heartbeats_per_worker_per_second: 1,
    },
    levels,
  };
}
