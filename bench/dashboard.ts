/**
 * (f) Dashboard: what `rbee dashboard` costs to keep open on a big hive. 500 simulated workers
 * heartbeat once a second (bench/lib/stub-hive-events.ts, its own process, loopback SSE: the same
 * GET /v1/events and GET /v1/status the dashboard reads from a hive); this process is the
 * dashboard: the real event feed, reducer and ink render of <Dashboard> (ink prepared as `rbee dashboard`
 * prepares it: prepareInk) on a 160 × 40 terminal whose output is counted and dropped.
 *
 *   frames/s      = ink renders (its onRender callback) ÷ wall time; also the frames actually written
 *   CPU           = Δ process.cpuUsage() (user + system) ÷ wall time, % of one core
 *   render ms     = ink's own render of the tree to text, per frame (onRender's renderTime)
 *   key → frame   = a j/k written to stdin every 2 s → the next render (the selection moves)
 *   loop delay    = p99 of the event loop's delay (perf_hooks), what a key waits at worst
 * Alternating with each dashboard window, a feed-only window (event feed + reducer, no React, no
 * ink) on the same stream: the difference is what drawing costs. Goal: ≥ 5 frames/s, ≤ 10 % of a core.
 *
 *   node --import tsx bench/dashboard.ts [--workers 500] [--windows 3] [--seconds 10] [--terminal 160x40] [--quick]
 */
import {spawn} from 'node:child_process';
import {EventEmitter} from 'node:events';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import {monitorEventLoopDelay} from 'node:perf_hooks';
import {fileURLToPath, pathToFileURL} from 'node:url';
import {parseArgs} from 'node:util';
import {HiveClient} from '../src/protocol/hive-client.js';
import type {HiveEvent} from '../src/protocol/wire.js';
import {hiveDashboardApi, type DashboardApi} from '../src/tui/dashboard-api.js';
import {startEventFeed} from '../src/tui/event-feed.js';
import {initialModel, reduceModel, type HiveModel} from '../src/tui/model.js';
import {cleanupAll, installExitHandlers, onCleanup} from './lib/cleanup.js';
import {repoRoot} from './lib/hive-process.js';
import {sleep} from './lib/http.js';
import {machineInfo, machineSlug, type MachineInfo} from './lib/machine.js';
import {processCpuSeconds} from './lib/proc-cpu.js';
import {median, quantile, round} from './lib/stats.js';
import {fmt, renderMarkdown, renderText, type Table} from './lib/table.js';
import {workerInfo} from '../test/helpers/wire-fixtures.js';

const stubScript = fileURLToPath(new URL('./lib/stub-hive-events.ts', import.meta.url));

export type DashboardBenchOptions = {
  workers: number;
  heartbeatIntervalMs: number;
  /** Measured windows of each kind (dashboard, feed only), alternating. */
  windows: number;
  windowSeconds: number;
  warmupSeconds: number;
  columns: number;
  rows: number;
  log: (message: string) => void;
};

export type DashboardWindow = {
  kind: 'dashboard' | 'feed-only';
  seconds: number;
  events_per_second: number;
  cpu_percent: number;
  /** The stub hive's CPU in the same window (not the dashboard's; shown for context). */
  stub_cpu_percent: number;
  frames_per_second: number | null;
  written_frames_per_second: number | null;
  output_kib_per_second: number | null;
  render_ms: {p50: number; p99: number} | null;
  key_to_frame_ms: {n: number; p50: number; max: number} | null;
  loop_delay_ms: {p50: number; p99: number; max: number};
  rss_mib: number;
};

export type DashboardBenchResult = {
  config: {
    workers: number;
    heartbeat_interval_ms: number;
    windows: number;
    window_seconds: number;
    warmup_seconds: number;
    terminal: string;
    flush_ms: number;
    max_fps: number;
  };
  windows: DashboardWindow[];
  /** Median over the windows of each kind. */
  summary: {
    dashboard: {
      cpu_percent: number;
      frames_per_second: number;
      render_ms_p50: number;
      key_to_frame_ms_p50: number;
      loop_delay_ms_p99: number;
      events_per_second: number;
    };
    feed_only: {cpu_percent: number; events_per_second: number};
    goal: {frames_per_second: 5; cpu_percent: 10; met: boolean};
  };
  /** The reducer alone: µs per heartbeat folded into a 500-worker model, in batches as the feed hands them over. */
  reducer_us_per_event: number;
};

/** A terminal for ink that counts what it is sent and throws it away. */
class CountingStdout extends EventEmitter {
  readonly isTTY = true;
  bytes = 0;
  writes = 0;
  constructor(
    readonly columns: number,
    readonly rows: number,
  ) {
    super();
  }

  write(chunk: string | Uint8Array): boolean {
    this.bytes += typeof chunk === 'string' ? Buffer.byteLength(chunk) : chunk.byteLength;
    this.writes++;
    return true;
  }
}

/** A keyboard for ink: keys written here reach useInput as a terminal's would. */
class ScriptedStdin extends EventEmitter {
  readonly isTTY = true;
  #data: string | null = null;
  write(data: string): void {
    this.#data = data;
    this.emit('readable');
    this.emit('data', data);
  }

  read(): string | null {
    const data = this.#data;
    this.#data = null;
    return data;
  }

  setEncoding(): void {}
  setRawMode(): void {}
  resume(): void {}
  pause(): void {}
  ref(): void {}
  unref(): void {}
}

type Stub = {url: string; pid: number; stop(): Promise<void>};

async function startStub(workers: number, intervalMs: number): Promise<Stub> {
  const child = spawn(process.execPath, ['--import', 'tsx', stubScript, String(workers), String(intervalMs)], {
    cwd: repoRoot,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', chunk => {
    stdout += String(chunk);
  });
  child.stderr.on('data', chunk => {
    stderr = (stderr + String(chunk)).slice(-8_192);
  });
  let gone = false;
  const exited = new Promise<void>(resolve =>
    child.once('exit', () => {
      gone = true;
      resolve();
    }),
  );
  const stop = async () => {
    if (!gone) {
      child.kill('SIGTERM');
      const killer = setTimeout(() => child.kill('SIGKILL'), 5_000);
      await exited;
      clearTimeout(killer);
    }
    unregister();
  };
  const unregister = onCleanup(`stub hive ${child.pid}`, stop);
  const deadline = performance.now() + 30_000;
  while (!stdout.includes('\n')) {
    if (gone || performance.now() > deadline) {
      await stop();
      throw new Error(`the stub hive did not start: ${stderr}`);
    }
    await sleep(20);
  }
  const started = JSON.parse(stdout.slice(0, stdout.indexOf('\n'))) as {url: string; pid: number};
  return {...started, stop};
}

/** Counts the events the dashboard receives, passing them on. */
function countingApi(api: DashboardApi): {api: DashboardApi; events: () => number} {
  let events = 0;
  return {
    api: {
      ...api,
      url: api.url,
      subscribe: (onData, signal) =>
        api.subscribe(data => {
          events++;
          onData(data);
        }, signal),
    },
    events: () => events,
  };
}

function cpuSeconds(): number {
  const usage = process.cpuUsage();
  return (usage.user + usage.system) / 1e6;
}

async function measure<T>(
  seconds: number,
  stubPid: number,
  body: (sample: () => void) => Promise<T>,
): Promise<{wall: number; cpu: number; stubCpu: number; loop: {p50: number; p99: number; max: number}; value: T}> {
  const loop = monitorEventLoopDelay({resolution: 5});
  let from = {wall: 0, cpu: 0, stub: 0};
  const sample = () => {
    from = {wall: performance.now(), cpu: cpuSeconds(), stub: processCpuSeconds(stubPid)};
    loop.reset();
    loop.enable();
  };
  const value = await body(sample);
  loop.disable();
  const wall = (performance.now() - from.wall) / 1_000;
  return {
    wall,
    cpu: (100 * (cpuSeconds() - from.cpu)) / wall,
    stubCpu: (100 * (processCpuSeconds(stubPid) - from.stub)) / wall,
    loop: {p50: round(loop.percentile(50) / 1e6, 2), p99: round(loop.percentile(99) / 1e6, 2), max: round(loop.max / 1e6, 2)},
    value,
  };
}

async function dashboardWindow(stub: Stub, options: DashboardBenchOptions): Promise<DashboardWindow> {
  // ink draws only a final frame when it thinks it runs in CI: a dashboard never does.
  delete process.env.CI;
  delete process.env.CONTINUOUS_INTEGRATION;
  // React's production build, as `rbee dashboard` loads it.
  process.env.NODE_ENV ??= 'production';
  const [{render}, React, {Dashboard}, {dashboardRenderOptions, prepareInk}] = await Promise.all([
    import('ink'),
    import('react'),
    import('../src/tui/components/Dashboard.js'),
    import('../src/tui/run-dashboard.js'),
  ]);
  await prepareInk();
  const home = fs.mkdtempSync(path.join(os.tmpdir(), 'rbee-bench-dashboard-'));
  const counted = countingApi(hiveDashboardApi(new HiveClient({url: stub.url, token: undefined}), {home}));
  const stdout = new CountingStdout(options.columns, options.rows);
  const stdin = new ScriptedStdin();
  let frames = 0;
  const renderTimes: number[] = [];
  const keyLatencies: number[] = [];
  let keyAt: number | null = null;
  const instance = render(React.createElement(Dashboard, {api: counted.api, colors: true}), {
    stdout: stdout as unknown as NodeJS.WriteStream,
    stdin: stdin as unknown as NodeJS.ReadStream,
    stderr: new CountingStdout(options.columns, options.rows) as unknown as NodeJS.WriteStream,
    exitOnCtrlC: false,
    patchConsole: false,
    ...dashboardRenderOptions,
    onRender: ({renderTime}) => {
      frames++;
      renderTimes.push(renderTime);
      if (keyAt !== null) {
        keyLatencies.push(performance.now() - keyAt);
        keyAt = null;
      }
    },
  });
  try {
    const result = await measure(options.windowSeconds, stub.pid, async sample => {
      await sleep(options.warmupSeconds * 1_000);
      const start = {frames, events: counted.events(), bytes: stdout.bytes, writes: stdout.writes};
      renderTimes.length = 0;
      keyLatencies.length = 0;
      sample();
      let down = true;
      const keys = setInterval(() => {
        keyAt = performance.now();
        stdin.write(down ? 'j' : 'k');
        down = !down;
      }, 2_000);
      await sleep(options.windowSeconds * 1_000);
      clearInterval(keys);
      return {frames: frames - start.frames, events: counted.events() - start.events, bytes: stdout.bytes - start.bytes, writes: stdout.writes - start.writes};
    });
    const {wall, value} = result;
    const sortedRender = [...renderTimes].sort((a, b) => a - b);
    return {
      kind: 'dashboard',
      seconds: round(wall, 2),
      events_per_second: round(value.events / wall, 1),
      cpu_percent: round(result.cpu, 2),
      stub_cpu_percent: round(result.stubCpu, 2),
      frames_per_second: round(value.frames / wall, 2),
      written_frames_per_second: round(value.writes / wall, 2),
      output_kib_per_second: round(value.bytes / 1024 / wall, 1),
      render_ms: {p50: round(quantile(sortedRender, 0.5), 3), p99: round(quantile(sortedRender, 0.99), 3)},
      key_to_frame_ms:
        keyLatencies.length === 0 ? null : {n: keyLatencies.length, p50: round(median(keyLatencies), 1), max: round(Math.max(...keyLatencies), 1)},
      loop_delay_ms: result.loop,
      rss_mib: round(process.memoryUsage().rss / 1024 ** 2, 1),
    };
  } finally {
    instance.unmount();
    instance.cleanup();
    fs.rmSync(home, {recursive: true, force: true});
  }
}

async function feedOnlyWindow(stub: Stub, options: DashboardBenchOptions): Promise<DashboardWindow> {
  const counted = countingApi(hiveDashboardApi(new HiveClient({url: stub.url, token: undefined}), {home: os.tmpdir()}));
  let model: HiveModel = initialModel(stub.url, Date.now());
  const feed = startEventFeed({
    api: counted.api,
    onEvents: events => {
      model = reduceModel(model, {type: 'events', events, now: Date.now()});
    },
    onConnection: connection => {
      model = reduceModel(model, {type: 'connection', connection});
    },
    onRejected: count => {
      model = reduceModel(model, {type: 'rejected', count});
    },
  });
  try {
    const result = await measure(options.windowSeconds, stub.pid, async sample => {
      await sleep(options.warmupSeconds * 1_000);
      const start = counted.events();
      sample();
      await sleep(options.windowSeconds * 1_000);
      return counted.events() - start;
    });
    if (model.workers.size !== options.workers) {
      throw new Error(`the feed saw ${model.workers.size} workers, not ${options.workers}`);
    }
    if (model.rejected > 0) {
      throw new Error(`the feed dropped ${model.rejected} events of the stub as malformed: the stub must send valid events`);
    }
    return {
      kind: 'feed-only',
      seconds: round(result.wall, 2),
      events_per_second: round(result.value / result.wall, 1),
      cpu_percent: round(result.cpu, 2),
      stub_cpu_percent: round(result.stubCpu, 2),
      frames_per_second: null,
      written_frames_per_second: null,
      output_kib_per_second: null,
      render_ms: null,
      key_to_frame_ms: null,
      loop_delay_ms: result.loop,
      rss_mib: round(process.memoryUsage().rss / 1024 ** 2, 1),
    };
  } finally {
    feed.stop();
  }
}

/** The reducer alone, in-process: 20 s of heartbeats of `workers` workers, in 100 ms batches. */
function reducerMicrobench(workers: number): number {
  const at = Date.now();
  const infos = Array.from({length: workers}, (_, index) =>
    workerInfo({
      worker_id: `worker-${index}`,
      model: 'm',
      model_path: null,
      pid: 1,
      port: 1,
      url: 'http://127.0.0.1:1',
      started_at: new Date(at).toISOString(),
    }),
  );
  let model = reduceModel(initialModel('http://bench', at), {
    type: 'events',
    now: at,
    events: [{type: 'snapshot', at: new Date(at).toISOString(), hive: {url: 'http://bench', pid: 1, version: 'b'}, workers: infos, groups: []}],
  });
  const perBatch = Math.max(1, Math.round(workers / 10));
  const batches: HiveEvent[][] = Array.from({length: 200}, (_, batch) =>
    Array.from({length: perBatch}, (_, index) => {
      const id = `worker-${(batch * perBatch + index) % workers}`;
      const time = new Date(at + batch * 100 + index).toISOString();
      return {
        type: 'heartbeat' as const,
        at: time,
        worker_id: id,
        heartbeat: {worker_id: id, status: 'ready' as const, throughput_tokens_per_second: index, queue_depth: 0, ram_used: 1},
      };
    }),
  );
  const began = performance.now();
  for (const [index, events] of batches.entries()) {
    model = reduceModel(model, {type: 'events', events, now: at + index * 100});
  }
  return round(((performance.now() - began) * 1_000) / (batches.length * perBatch), 3);
}

export async function runDashboardBench(options: DashboardBenchOptions): Promise<DashboardBenchResult> {
  const stub = await startStub(options.workers, options.heartbeatIntervalMs);
  const windows: DashboardWindow[] = [];
  try {
    for (let round = 0; round < options.windows; round++) {
      // Alternating which goes first, so drift on the machine falls on both alike.
      const order = round % 2 === 0 ? (['dashboard', 'feed-only'] as const) : (['feed-only', 'dashboard'] as const);
      for (const kind of order) {
        const window = kind === 'dashboard' ? await dashboardWindow(stub, options) : await feedOnlyWindow(stub, options);
        options.log(
          `${kind} window ${round + 1}/${options.windows}: ${window.events_per_second} events/s, CPU ${window.cpu_percent} %${window.frames_per_second === null ? '' : `, ${window.frames_per_second} frames/s, render p50 ${window.render_ms?.p50} ms`}`,
        );
        windows.push(window);
      }
    }
  } finally {
    await stub.stop();
  }
  const of = (kind: DashboardWindow['kind']) => windows.filter(window => window.kind === kind);
  const med = (kind: DashboardWindow['kind'], pick: (window: DashboardWindow) => number | null | undefined) =>
    round(
      median(
        of(kind)
          .map(pick)
          .filter((value): value is number => typeof value === 'number'),
      ),
      2,
    );
  const dashboard = {
    cpu_percent: med('dashboard', window => window.cpu_percent),
    frames_per_second: med('dashboard', window => window.frames_per_second),
    render_ms_p50: med('dashboard', window => window.render_ms?.p50),
    key_to_frame_ms_p50: med('dashboard', window => window.key_to_frame_ms?.p50),
    loop_delay_ms_p99: med('dashboard', window => window.loop_delay_ms.p99),
    events_per_second: med('dashboard', window => window.events_per_second),
  };
  return {
    config: {
      workers: options.workers,
      heartbeat_interval_ms: options.heartbeatIntervalMs,
      windows: options.windows,
      window_seconds: options.windowSeconds,
      warmup_seconds: options.warmupSeconds,
      terminal: `${options.columns}×${options.rows}`,
      flush_ms: 200,
      max_fps: 30,
    },
    windows,
    summary: {
      dashboard,
      feed_only: {cpu_percent: med('feed-only', window => window.cpu_percent), events_per_second: med('feed-only', window => window.events_per_second)},
      goal: {frames_per_second: 5, cpu_percent: 10, met: dashboard.frames_per_second >= 5 && dashboard.cpu_percent <= 10},
    },
    reducer_us_per_event: reducerMicrobench(options.workers),
  };
}

export function dashboardTables(result: DashboardBenchResult): Table[] {
  const {summary, config} = result;
  const dashboards = result.windows.filter(window => window.kind === 'dashboard');
  const feeds = result.windows.filter(window => window.kind === 'feed-only');
  return [
    {
      title: `(f) dashboard: ${config.workers} workers heartbeating every ${config.heartbeat_interval_ms / 1000} s, ${config.terminal} terminal (median of ${config.windows} × ${config.window_seconds} s windows)`,
      header: ['measure', 'dashboard', 'feed only', 'goal'],
      rows: [
        ['events received /s', fmt(summary.dashboard.events_per_second, 0), fmt(summary.feed_only.events_per_second, 0), ''],
        ['CPU, % of one core', fmt(summary.dashboard.cpu_percent, 2), fmt(summary.feed_only.cpu_percent, 2), `≤ ${summary.goal.cpu_percent}`],
        ['frames rendered /s', fmt(summary.dashboard.frames_per_second, 2), '–', `≥ ${summary.goal.frames_per_second}`],
        ['stdout writes /s', fmt(median(dashboards.map(window => window.written_frames_per_second ?? Number.NaN)), 2), '–', ''],
        ['terminal output KiB/s', fmt(median(dashboards.map(window => window.output_kib_per_second ?? Number.NaN)), 1), '–', ''],
        [
          'ink render ms/frame p50 (p99)',
          `${fmt(summary.dashboard.render_ms_p50, 2)} (${fmt(median(dashboards.map(window => window.render_ms?.p99 ?? Number.NaN)), 2)})`,
          '–',
          '',
        ],
        ['key → next frame ms p50', fmt(summary.dashboard.key_to_frame_ms_p50, 1), '–', ''],
        ['event loop delay ms p99', fmt(summary.dashboard.loop_delay_ms_p99, 1), fmt(median(feeds.map(window => window.loop_delay_ms.p99)), 1), ''],
        [
          'stub hive CPU % (not counted)',
          fmt(median(dashboards.map(window => window.stub_cpu_percent)), 1),
          fmt(median(feeds.map(window => window.stub_cpu_percent)), 1),
          '',
        ],
      ],
      notes: [
        `goal (≥ ${summary.goal.frames_per_second} frames/s and ≤ ${summary.goal.cpu_percent} % of a core): ${summary.goal.met ? 'met' : 'NOT met'}.`,
        `dashboard = this process running the real <Dashboard> (event feed with full schema validation → reducer → React → ink with the dashboard's row cache, src/tui/ink-row-cache.ts, as 'rbee dashboard' runs it; heartbeats handed over every 200 ms, colours on, ink at most 30 fps, a j/k key every 2 s) on a counted, discarded ${config.terminal} terminal; feed only = the same event feed and reducer without React or ink. Both read the stub hive over loopback SSE.`,
        `reducer alone: ${fmt(result.reducer_us_per_event, 3)} µs per heartbeat (${config.workers}-worker model, batches of ${Math.round(config.workers / 10)}).`,
        `per window (dashboard CPU % / frames/s): ${dashboards.map(window => `${fmt(window.cpu_percent, 2)} / ${fmt(window.frames_per_second, 2)}`).join('; ')}.`,
        'the stub hive runs in its own process: its CPU is shown, not counted. On a shared machine other processes can take the cores: compare with the feed-only column of the same run.',
      ],
    },
  ];
}

// ---- standalone: node --import tsx bench/dashboard.ts [--workers N] [--windows N] [--seconds S] [--terminal WxH] [--quick] ----

const resultsDir = fileURLToPath(new URL('./results/', import.meta.url));

type Document = {
  schema: 'rbee-bench-dashboard/1';
  date: string;
  command: string;
  wall_seconds: number;
  load_average: {before: number[]; after: number[]};
  machine: MachineInfo;
  dashboard: DashboardBenchResult;
};

function localDate(date: Date): string {
  const pad = (value: number) => String(value).padStart(2, '0');
  return `${date.getFullYear()}-${pad(date.getMonth() + 1)}-${pad(date.getDate())}`;
}

async function main(): Promise<void> {
  const argv = process.argv.slice(2);
  const {values} = parseArgs({
    args: argv,
    options: {
      workers: {type: 'string'},
      windows: {type: 'string'},
      seconds: {type: 'string'},
      terminal: {type: 'string'},
      quick: {type: 'boolean', default: false},
    },
    strict: true,
  });
  const quick = values.quick === true;
  const integer = (value: string | undefined, fallback: number, name: string, max: number) => {
    const parsed = value === undefined ? fallback : Number(value);
    if (!Number.isInteger(parsed) || parsed < 1 || parsed > max) {
      throw new Error(`--${name} must be an integer from 1 to ${max}, not "${value}"`);
    }
    return parsed;
  };
  const terminal = /^(\d{2,3})x(\d{2,3})$/.exec(values.terminal ?? '160x40');
  if (terminal === null) {
    throw new Error(`--terminal must be COLUMNSxROWS, like 160x40, not "${values.terminal}"`);
  }
  const options: DashboardBenchOptions = {
    workers: integer(values.workers, 500, 'workers', 20_000),
    heartbeatIntervalMs: 1_000,
    windows: integer(values.windows, quick ? 1 : 3, 'windows', 20),
    windowSeconds: integer(values.seconds, quick ? 4 : 10, 'seconds', 120),
    warmupSeconds: quick ? 1 : 2,
    columns: Number(terminal[1]),
    rows: Number(terminal[2]),
    log: message => process.stderr.write(`[bench] ${message}\n`),
  };
  installExitHandlers(10 * 60_000);
  const started = new Date();
  const began = performance.now();
  const loadBefore = os.loadavg().map(value => round(value, 2));
  const machine = machineInfo();
  options.log(
    `${machine.cpu_model} × ${machine.cores}, Node ${machine.node}; ${options.workers} workers at 1 heartbeat/s; ${options.windows} × ${options.windowSeconds} s windows each`,
  );
  const result = await runDashboardBench(options);
  const document: Document = {
    schema: 'rbee-bench-dashboard/1',
    date: started.toISOString(),
    command: ['node', '--import', 'tsx', 'bench/dashboard.ts', ...argv].join(' '),
    wall_seconds: Math.round((performance.now() - began) / 1000),
    load_average: {before: loadBefore, after: os.loadavg().map(value => round(value, 2))},
    machine,
    dashboard: result,
  };
  fs.mkdirSync(resultsDir, {recursive: true});
  const size = `${options.columns}x${options.rows}`;
  const base = path.join(resultsDir, `${localDate(started)}-${machineSlug(machine)}-dashboard${size === '160x40' ? '' : `-${size}`}${quick ? '-quick' : ''}`);
  fs.writeFileSync(`${base}.json`, `${JSON.stringify(document, null, 2)}\n`);
  const tables = dashboardTables(result);
  const markdown = [
    `# rbee dashboard benchmark — ${localDate(started)}, ${machine.cpu_model} × ${machine.cores}`,
    '',
    `\`${document.command}\`; Node ${machine.node}; load average ${loadBefore.join(' ')} before, ${document.load_average.after.join(' ')} after; ${document.wall_seconds} s.`,
    '',
    ...tables.map(renderMarkdown),
    '',
  ].join('\n');
  fs.writeFileSync(`${base}.md`, markdown);
  process.stdout.write(`${tables.map(renderText).join('\n\n')}\n\nwrote ${path.relative(repoRoot, base)}.{json,md}\n`);
}

const invokedDirectly = process.argv[1] !== undefined && import.meta.url === pathToFileURL(path.resolve(process.argv[1])).href;
if (invokedDirectly) {
  try {
    await main();
  } catch (error) {
    process.stderr.write(`[bench] failed: ${(error as Error).stack ?? String(error)}\n`);
    process.exitCode = 1;
  } finally {
    await cleanupAll();
  }
}
