/**
 * (e) llama-server alone vs the same llama-server behind rbee's llamacpp adapter, a worker and the hive.
 *
 * rbee: one hive (its config selects `engine: "llama-server"` for llamacpp) and one worker
 * `{threads: 2, parallel: 4, context_size: 1024}`; the adapter starts llama-server with
 * `--ctx-size 4096 --parallel 4 --threads 2 ...`. Streams are `POST /v1/infer` through the hive.
 * peer: a second llama-server started by this benchmark with exactly the argument list the adapter
 * gave its own (read back from /proc/<pid>/cmdline, only --port changed), asked directly with a
 * streaming `POST /completion` carrying what the adapter sends (prompt, n_predict, cache_prompt,
 * temperature 0, seed 1). Also, as a breakdown, the worker asked at its own port (the adapter
 * without the hive).
 *
 * Both stacks stay up for the whole run; only one is asked at a time, the other sits idle (its CPU
 * during the other's batches is measured and reported). For 1 and 16 concurrent streams, rounds
 * alternate: peer → rbee → worker, then worker → rbee → peer. Per stream: TTFT (request → first
 * token event) and decode tok/s ((tokens − 1) / (t_last_token − t_first_token)); per batch:
 * aggregate tok/s (all tokens / batch wall time), CPU seconds of every process involved, and
 * llama-server's own /metrics (decode calls, busy slots per decode).
 *
 *   npm run build && node --import tsx bench/llama-server-overhead.ts [--runs N] [--quick]
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import {fileURLToPath, pathToFileURL} from 'node:url';
import {parseArgs} from 'node:util';
import {findLlamaCpp} from '../src/engines/llama-cpp-build.js';
import {resolveModel} from '../src/models/resolve-model.js';
import {cleanupAll, installExitHandlers} from './lib/cleanup.js';
import {rbeeBin, startHiveProcess, type HiveProcess} from './lib/hive-process.js';
import {waitUntilReady} from './lib/hive-workers.js';
import {sleep} from './lib/http.js';
import {
  argValue,
  childPids,
  cmdline,
  freeLoopbackPort,
  llamaServerVersion,
  machineCpuSeconds,
  scrapeMetrics,
  startLlamaServer,
  withArg,
  type LlamaServerProcess,
} from './lib/llama-server-process.js';
import {machineInfo, machineSlug, modelInfo, type MachineInfo, type ModelInfo} from './lib/machine.js';
import {ownCpuSeconds, processCpuSeconds} from './lib/proc-cpu.js';
import {timedStream, type TimedStream} from './lib/sse-timing.js';
import {median, ratio, round, roundSummary, summarize, type Summary} from './lib/stats.js';
import {fmt, fmtRatio, renderMarkdown, renderText, type Table} from './lib/table.js';
import {prompt} from './routing-overhead.js';

export type LlamaServerOverheadOptions = {
  modelPath: string;
  rounds: number;
  concurrencies: number[];
  threads: number;
  parallel: number;
  /** Per sequence, as rbee's context_size; llama-server gets --ctx-size contextSize × parallel. */
  contextSize: number;
  maxTokens: number;
  log: (message: string) => void;
  /** Also ask the worker at its own port: the adapter without the hive (default true). */
  workerDirect?: boolean;
  /**
   * Before each batch, wait (at most `quietWaitMs`, default 30 s) until other processes use under
   * `quietCores` (default 0.25) of a core over two 0.5 s windows in a row: a shared machine's bursts fall between batches.
   */
  quietCores?: number;
  quietWaitMs?: number;
  /**
   * A batch during which other processes used more than `quietCores` on average is run again, at
   * most this many times (default 2); the last try counts, the others are kept in `discarded`.
   */
  retryDisturbed?: number;
  /** Time all the discarded tries of a run may take together, waits included (default 8 min). */
  retryBudgetMs?: number;
  /** No round starts once this much time has passed since the start (default none); at least one always runs. */
  budgetMs?: number;
  /** Per stream (default 600 s); the caller's deadline bounds the whole run anyway. */
  streamTimeoutMs?: number;
};

export type Side = 'peer' | 'rbee' | 'worker';

type CpuSample = {peer_server: number; hive: number; worker: number; worker_server: number; bench_client: number; machine_busy: number; steal: number};

type Batch = {
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
    threads: number;
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
  stop_ms: {peer: number; hive: number};
  leaks: string[];
};

const disturbedCores = 0.25;

function expectedAdapterArgs(options: LlamaServerOverheadOptions): string[] {
  // adapters/llamacpp/src/llama-server-engine.ts, LlamaServerEngine.start, on device cpu.
  return [
    '--model', options.modelPath,
    '--host', '127.0.0.1',
    '--port', '<port>',
    '--ctx-size', String(options.contextSize * options.parallel),
    '--parallel', String(options.parallel),
    '--n-gpu-layers', '0',
    '--metrics',
    '--slots',
    '--no-webui',
    '--jinja',
    '--threads', String(options.threads),
  ];
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

async function startRbee(options: LlamaServerOverheadOptions, configFile: string): Promise<{
  hive: HiveProcess; workerId: string; workerUrl: string; workerKey: string; workerPid: number; readyMs: number; serverPid: number; serverArgv: string[]; serverKey: string | undefined;
}> {
  const hive = await startHiveProcess({args: ['--config', configFile]});
  options.log(`hive ${hive.url} (pid ${hive.pid}), config ${configFile}`);
  try {
    const began = performance.now();
    const created = await hive.client.spawnWorker({
      model: options.modelPath,
      threads: options.threads,
      parallel: options.parallel,
      context_size: options.contextSize,
    }, {timeoutMs: 60_000});
    const workerId = created.worker_id;
    const ready = await waitUntilReady(hive, workerId, {timeoutMs: 120_000, intervalMs: 50});
    if (ready.pid === null) {
      throw new Error(`worker ${workerId} is ready without a pid`);
    }
    const info = {url: ready.url, pid: ready.pid};
    const readyMs = performance.now() - began;
    const servers = childPids(info.pid).filter(pid => {
      try {
        return path.basename(cmdline(pid)[0] ?? '') === 'llama-server';
      } catch {
        return false;
      }
    });
    if (servers.length !== 1) {
      throw new Error(`worker ${workerId} (pid ${info.pid}) runs ${servers.length} llama-server processes, not 1: did the config's engine "llama-server" apply?`);
    }
    const serverPid = servers[0]!;
    // The worker's port and its llama-server each demand a key: the worker's from the hive, the engine's from its environment.
    const key = await hive.client.workerKey(workerId);
    const serverKey = fs.readFileSync(`/proc/${serverPid}/environ`, 'utf8').split('\0').find(entry => entry.startsWith('LLAMA_API_KEY='))?.slice('LLAMA_API_KEY='.length);
    return {hive, workerId, workerUrl: info.url, workerKey: key.key, workerPid: info.pid, readyMs, serverPid, serverArgv: cmdline(serverPid), serverKey};
  } catch (error) {
    await hive.stop();
    throw error;
  }
}

function summarizeSide(batches: Batch[], side: Side): SideSummary {
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

function ratios(numerator: SideSummary, denominator: SideSummary) {
  return {
    ttft: round(ratio(numerator.ttft_ms.median, denominator.ttft_ms.median), 3),
    decode_tps_per_stream: round(ratio(numerator.decode_tps_per_stream.median, denominator.decode_tps_per_stream.median), 3),
    aggregate_tps: round(ratio(numerator.aggregate_tps.median, denominator.aggregate_tps.median), 3),
  };
}

export async function runLlamaServerOverhead(options: LlamaServerOverheadOptions): Promise<LlamaServerOverheadResult> {
  const runBegan = performance.now();
  const workerDirect = options.workerDirect ?? true;
  const cached = findLlamaCpp();
  const project = fs.mkdtempSync(path.join(os.tmpdir(), 'rbee-bench-llama-server-'));
  const configFile = path.join(project, 'rbee.config.json');
  const rbeeConfig = {types: {llamacpp: {engine: 'llama-server'}}};
  fs.writeFileSync(configFile, `${JSON.stringify(rbeeConfig)}\n`);

  let rbee: Awaited<ReturnType<typeof startRbee>> | null = null;
  let peer: LlamaServerProcess | null = null;
  const stopMs = {peer: Number.NaN, hive: Number.NaN};
  const leaks: string[] = [];
  try {
    // rbee first: the peer copies the argument list the adapter actually gave its llama-server.
    rbee = await startRbee(options, configFile);
    const serverPath = rbee.serverArgv[0]!;
    const actualArgs = rbee.serverArgv.slice(1);
    const expected = expectedAdapterArgs(options);
    const matched = JSON.stringify(withArg(actualArgs, '--port', '<port>')) === JSON.stringify(expected);
    options.log(`worker ${rbee.workerId} ready in ${rbee.readyMs.toFixed(0)} ms (pid ${rbee.workerPid}); its llama-server (pid ${rbee.serverPid}): ${rbee.serverArgv.join(' ')}`);
    if (!matched) {
      options.log(`odd: the adapter's llama-server arguments differ from what bench expected: ${expected.join(' ')}`);
    }
    if (cached !== null && fs.realpathSync(cached.programs['llama-server']) !== fs.realpathSync(serverPath)) {
      options.log(`odd: the worker runs ${serverPath}, not the cached build ${cached.programs['llama-server']}`);
    }
    const version = llamaServerVersion(serverPath);
    const workerServerUrl = `http://127.0.0.1:${argValue(actualArgs, '--port')}`;

    peer = await startLlamaServer(serverPath, withArg(actualArgs, '--port', String(await freeLoopbackPort())));
    options.log(`peer llama-server ${peer.url} (pid ${peer.pid}) ready in ${peer.readyMs.toFixed(0)} ms; ${version.split('\n')[0]}`);

    const running = {peer, rbee};
    const sides: Side[] = workerDirect ? ['peer', 'rbee', 'worker'] : ['peer', 'rbee'];
    const target: Record<Side, {url: string; body: Record<string, unknown>; format: 'llama-server' | 'rbee'; serverUrl: string; headers?: Record<string, string>; serverKey?: string}> = {
      // What the adapter sends to its llama-server for a /v1/infer (llama-server-engine.ts #complete).
      peer: {url: `${peer.url}/completion`, body: {prompt, n_predict: options.maxTokens, cache_prompt: true, temperature: 0, seed: 1}, format: 'llama-server', serverUrl: peer.url},
      rbee: {url: `${rbee.hive.url}/v1/infer`, body: {prompt, max_tokens: options.maxTokens, temperature: 0, seed: 1}, format: 'rbee', serverUrl: workerServerUrl, ...(rbee.serverKey === undefined ? {} : {serverKey: rbee.serverKey})},
      worker: {
        url: `${rbee.workerUrl}/v1/infer`, body: {prompt, max_tokens: options.maxTokens, temperature: 0, seed: 1}, format: 'rbee', serverUrl: workerServerUrl,
        headers: {authorization: `Bearer ${rbee.workerKey}`}, ...(rbee.serverKey === undefined ? {} : {serverKey: rbee.serverKey}),
      },
    };

    const cpuNow = (): CpuSample => {
      const machine = machineCpuSeconds();
      return {
        peer_server: processCpuSeconds(running.peer.pid),
        hive: processCpuSeconds(running.rbee.hive.pid),
        worker: processCpuSeconds(running.rbee.workerPid),
        worker_server: processCpuSeconds(running.rbee.serverPid),
        bench_client: ownCpuSeconds(),
        machine_busy: machine.busy,
        steal: machine.steal,
      };
    };

    const trackedOf = (sample: CpuSample) => sample.peer_server + sample.hive + sample.worker + sample.worker_server + sample.bench_client;
    const quietCores = options.quietCores ?? disturbedCores;
    const quietWaitMs = options.quietWaitMs ?? 30_000;
    const retryDisturbed = options.retryDisturbed ?? 2;
    const retryBudgetMs = options.retryBudgetMs ?? 8 * 60_000;
    let retrySpentMs = 0;
    // Quiet = two 0.5 s windows in a row under quietCores: a build's short pause between two compiler runs is not quiet.
    const waitForQuiet = async (): Promise<Batch['quiet']> => {
      const began = performance.now();
      let quietWindows = 0;
      for (;;) {
        const before = cpuNow();
        const from = performance.now();
        await sleep(500);
        const after = cpuNow();
        const foreign = ((after.machine_busy - before.machine_busy) - (trackedOf(after) - trackedOf(before))) / ((performance.now() - from) / 1000);
        quietWindows = foreign <= quietCores ? quietWindows + 1 : 0;
        const waited = performance.now() - began;
        if (quietWindows >= 2 || waited >= quietWaitMs) {
          return {waited_ms: round(waited, 0), foreign_cores: round(foreign, 2)};
        }
      }
    };

    const batch = async (side: Side, concurrency: number, roundIndex: number): Promise<Batch> => {
      const {url, body, format, serverUrl, headers, serverKey} = target[side];
      // Also lets the last batch's llama.cpp threads stop spinning and the sockets settle.
      const quiet = await waitForQuiet();
      const metricsBefore = await scrapeMetrics(serverUrl, serverKey);
      const cpuBefore = cpuNow();
      // Once a second, where the requests wait: in llama-server's own queue (deferred) or elsewhere.
      const queue = {sampling: true, maxProcessing: 0, maxDeferred: 0};
      const sampler = (async () => {
        let next = performance.now() + 1_000;
        while (queue.sampling) {
          await sleep(50);
          if (queue.sampling && performance.now() >= next) {
            next += 1_000;
            const seen = await scrapeMetrics(serverUrl, serverKey).catch(() => ({} as Record<string, number>));
            queue.maxProcessing = Math.max(queue.maxProcessing, seen['llamacpp:requests_processing'] ?? 0);
            queue.maxDeferred = Math.max(queue.maxDeferred, seen['llamacpp:requests_deferred'] ?? 0);
          }
        }
      })();
      const began = performance.now();
      const streams = await Promise.all(Array.from({length: concurrency}, () => timedStream(url, body, format, options.streamTimeoutMs ?? 600_000, headers)))
        .finally(() => {
          queue.sampling = false;
        });
      const wall = performance.now() - began;
      const cpuAfter = cpuNow();
      await sampler;
      const metricsAfter = await scrapeMetrics(serverUrl, serverKey);
      const delta = Object.fromEntries(Object.keys(cpuBefore).map(key => [key, cpuAfter[key as keyof CpuSample] - cpuBefore[key as keyof CpuSample]])) as CpuSample;
      const tracked = trackedOf(delta);
      const metric = (name: string, source: Record<string, number>) => source[`llamacpp:${name}`] ?? Number.NaN;
      const decodeCalls = metric('n_decode_total', metricsAfter) - metric('n_decode_total', metricsBefore);
      // n_busy_slots_per_decode is a lifetime average: recover the Δ of its numerator.
      const busySlots = metric('n_busy_slots_per_decode', metricsAfter) * metric('n_decode_total', metricsAfter) -
        metric('n_busy_slots_per_decode', metricsBefore) * metric('n_decode_total', metricsBefore);
      const tokens = streams.reduce((sum, stream) => sum + stream.tokens, 0);
      return {
        round: roundIndex,
        side,
        concurrency,
        wall_ms: wall,
        tokens,
        aggregate_tps: tokens / (wall / 1000),
        streams,
        quiet,
        cpu_s: {
          ...delta,
          foreign: delta.machine_busy - tracked,
          idle_side: side === 'peer' ? delta.hive + delta.worker + delta.worker_server : delta.peer_server,
        },
        server: {
          decode_calls: decodeCalls,
          busy_slots_per_decode: decodeCalls > 0 ? busySlots / decodeCalls : Number.NaN,
          tokens_predicted: metric('tokens_predicted_total', metricsAfter) - metric('tokens_predicted_total', metricsBefore),
          prompt_tokens: metric('prompt_tokens_total', metricsAfter) - metric('prompt_tokens_total', metricsBefore),
          max_processing: queue.maxProcessing,
          max_deferred: queue.maxDeferred,
        },
      };
    };

    // Warm-up, not recorded: each side one stream, then one stream per slot (every slot caches the prompt).
    for (const side of sides) {
      await batch(side, 1, -1);
      await batch(side, options.parallel, -1);
    }

    // A round runs every configuration, so a run cut short by its time budget still has all of them.
    const batchesOf = new Map(options.concurrencies.map(concurrency => [concurrency, [] as Batch[]]));
    const discardedOf = new Map(options.concurrencies.map(concurrency => [concurrency, [] as ConcurrencyResult['discarded']]));
    const foreignCores = (entry: Batch) => entry.cpu_s.foreign / (entry.wall_ms / 1000);
    const budgetEnd = runBegan + (options.budgetMs ?? Number.POSITIVE_INFINITY);
    let roundsDone = 0;
    for (let roundIndex = 0; roundIndex < options.rounds; roundIndex++) {
      if (roundIndex > 0 && performance.now() > budgetEnd) {
        options.log(`time budget of ${Math.round((options.budgetMs ?? 0) / 60_000)} min spent: stopping after ${roundsDone} of ${options.rounds} rounds`);
        break;
      }
      const order = roundIndex % 2 === 0 ? sides : [...sides].reverse();
      for (const concurrency of options.concurrencies) {
        const batches = batchesOf.get(concurrency)!;
        const discarded = discardedOf.get(concurrency)!;
        for (const side of order) {
          for (let attempt = 0; ; attempt++) {
            const attemptBegan = performance.now();
            const result = await batch(side, concurrency, roundIndex);
            const disturbed = foreignCores(result) > quietCores;
            const again = disturbed && attempt < retryDisturbed && retrySpentMs < retryBudgetMs;
            options.log(`c=${concurrency} round ${roundIndex + 1}/${options.rounds} ${side.padEnd(6)}: TTFT median ${median(result.streams.map(stream => stream.ttftMs)).toFixed(0)} ms, ` +
              `per-stream ${median(result.streams.map(stream => stream.decodeTokensPerSecond)).toFixed(1)} tok/s, aggregate ${result.aggregate_tps.toFixed(1)} tok/s, ` +
              `wall ${result.wall_ms.toFixed(0)} ms${result.quiet.waited_ms > 1_500 ? ` (after ${(result.quiet.waited_ms / 1000).toFixed(1)} s waiting for quiet)` : ''}, busy slots/decode ${result.server.busy_slots_per_decode.toFixed(2)}, ` +
              `other processes ${foreignCores(result).toFixed(2)} cores${again ? ': disturbed, running it again' : ''}`);
            if (!again) {
              batches.push(result);
              break;
            }
            retrySpentMs += performance.now() - attemptBegan;
            discarded.push({
              round: roundIndex,
              side,
              foreign_cores: round(foreignCores(result), 2),
              wall_ms: round(result.wall_ms, 1),
              aggregate_tps: round(result.aggregate_tps, 2),
              ttft_ms_median: round(median(result.streams.map(stream => stream.ttftMs)), 1),
            });
          }
        }
      }
      roundsDone++;
    }

    const results: ConcurrencyResult[] = [];
    for (const concurrency of options.concurrencies) {
      const batches = batchesOf.get(concurrency)!;
      const discarded = discardedOf.get(concurrency)!;
      const of = (side: Side) => batches.filter(entry => entry.side === side);
      const peerSummary = summarizeSide(of('peer'), 'peer');
      const rbeeSummary = summarizeSide(of('rbee'), 'rbee');
      const workerSummary = workerDirect ? summarizeSide(of('worker'), 'worker') : null;
      results.push({
        concurrency,
        rounds: roundsDone,
        peer: peerSummary,
        rbee: rbeeSummary,
        worker: workerSummary,
        ratio: ratios(rbeeSummary, peerSummary),
        breakdown: workerSummary === null ? null : {worker_over_peer: ratios(workerSummary, peerSummary), rbee_over_worker: ratios(rbeeSummary, workerSummary)},
        disturbed: batches
          .map(entry => ({round: entry.round, side: entry.side, foreign_cores: round(entry.cpu_s.foreign / (entry.wall_ms / 1000), 2)}))
          .filter(entry => entry.foreign_cores > quietCores),
        discarded,
        batches: batches.map(({streams, ...rest}) => ({
          ...rest,
          wall_ms: round(rest.wall_ms, 1),
          aggregate_tps: round(rest.aggregate_tps, 2),
          cpu_s: Object.fromEntries(Object.entries(rest.cpu_s).map(([key, value]) => [key, round(value, 3)])) as Batch['cpu_s'],
          server: {
            decode_calls: rest.server.decode_calls,
            busy_slots_per_decode: round(rest.server.busy_slots_per_decode, 3),
            tokens_predicted: rest.server.tokens_predicted,
            prompt_tokens: rest.server.prompt_tokens,
            max_processing: rest.server.max_processing,
            max_deferred: rest.server.max_deferred,
          },
          ttft_ms: streams.map(stream => round(stream.ttftMs, 1)),
          decode_tps: streams.map(stream => round(stream.decodeTokensPerSecond, 2)),
          tokens_per_stream: streams.map(stream => stream.tokens),
        })),
      });
    }

    return {
      config: {
        threads: options.threads,
        parallel: options.parallel,
        context_size_per_sequence: options.contextSize,
        max_tokens: options.maxTokens,
        temperature: 0,
        seed: 1,
        prompt,
        rounds: options.rounds,
        rounds_done: roundsDone,
        concurrencies: options.concurrencies,
        worker_direct: workerDirect,
        mode: 'both stacks up for the whole run; one asked at a time, the other idle',
        quiet_gate: {cores: quietCores, max_wait_ms: quietWaitMs, retries_of_disturbed_batches: retryDisturbed, retry_budget_ms: retryBudgetMs},
      },
      llama_cpp: {server_path: serverPath, version, cached_build: cached?.version ?? null},
      peer: {argv: peer.argv, pid: peer.pid, ready_ms: round(peer.readyMs, 1)},
      rbee: {
        hive_pid: rbee.hive.pid,
        worker_id: rbee.workerId,
        worker_pid: rbee.workerPid,
        worker_ready_ms: round(rbee.readyMs, 1),
        server_pid: rbee.serverPid,
        server_argv: rbee.serverArgv,
        config: rbeeConfig,
      },
      adapter_args: {expected, matched},
      concurrency: results,
      stop_ms: stopMs,
      leaks,
    };
  } finally {
    if (peer !== null) {
      stopMs.peer = round(await peer.stop(), 1);
    }
    if (rbee !== null) {
      stopMs.hive = round(await rbee.hive.stop(), 1);
      for (const [what, pid] of [['worker', rbee.workerPid], ['worker llama-server', rbee.serverPid]] as const) {
        if (alive(pid)) {
          leaks.push(`${what} ${pid}`);
          options.log(`odd: ${what} ${pid} alive after the hive exited: SIGKILL`);
          try {
            process.kill(pid, 'SIGKILL');
          } catch {
            // gone meanwhile
          }
        }
      }
    }
    fs.rmSync(project, {recursive: true, force: true});
  }
}

/** The tables, for run.ts or this file's own report. */
export function llamaServerOverheadTables(result: LlamaServerOverheadResult): Table[] {
  const {config} = result;
  const label = (concurrency: number) => `${concurrency} stream${concurrency === 1 ? '' : 's'}`;
  const headline: string[][] = [];
  for (const entry of result.concurrency) {
    const {peer, rbee} = entry;
    headline.push(
      [`${label(entry.concurrency)}: TTFT ms`, fmt(peer.ttft_ms.median), fmt(peer.ttft_ms.p90), fmt(rbee.ttft_ms.median), fmt(rbee.ttft_ms.p90), fmtRatio(entry.ratio.ttft)],
      [`${label(entry.concurrency)}: per-stream decode tok/s`, fmt(peer.decode_tps_per_stream.median, 2), fmt(peer.decode_tps_per_stream.p90, 2), fmt(rbee.decode_tps_per_stream.median, 2), fmt(rbee.decode_tps_per_stream.p90, 2), fmtRatio(entry.ratio.decode_tps_per_stream)],
      [`${label(entry.concurrency)}: aggregate tok/s`, fmt(peer.aggregate_tps.median, 2), fmt(peer.aggregate_tps.p90, 2), fmt(rbee.aggregate_tps.median, 2), fmt(rbee.aggregate_tps.p90, 2), fmtRatio(entry.ratio.aggregate_tps)],
    );
  }
  const tokens = result.concurrency.map(entry => `${entry.concurrency}: ${fmt(entry.peer.tokens_per_stream.median, 0)}/${fmt(entry.rbee.tokens_per_stream.median, 0)}`).join(', ');
  const disturbed = result.concurrency.flatMap(entry => entry.disturbed.map(batch => `${entry.concurrency} streams, round ${batch.round + 1} ${batch.side} (${fmt(batch.foreign_cores, 2)} cores)`));
  const discardedCount = result.concurrency.reduce((sum, entry) => sum + entry.discarded.length, 0);
  const allBatches = result.concurrency.flatMap(entry => entry.batches);
  const waitedSeconds = allBatches.reduce((sum, batch) => sum + batch.quiet.waited_ms, 0) / 1000;
  const unquiet = allBatches.filter(batch => batch.quiet.foreign_cores > config.quiet_gate.cores).length;
  const idle = result.concurrency.map(entry => `${entry.concurrency}: rbee idle during peer batches ${fmt(entry.peer.cpu_s_per_batch.idle_side, 3)} s, peer idle during rbee batches ${fmt(entry.rbee.cpu_s_per_batch.idle_side, 3)} s`).join('; ');
  const tables: Table[] = [{
    title: `(e) llama-server alone (peer) vs behind rbee: adapter + worker + hive (threads ${config.threads}, parallel ${config.parallel}, context ${config.context_size_per_sequence}/sequence = --ctx-size ${config.context_size_per_sequence * config.parallel}, ${config.max_tokens} tokens; ${config.rounds_done} rounds each, alternating${config.rounds_done < config.rounds ? `: ${config.rounds} asked, the time budget ran out` : ''})`,
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
      ...(disturbed.length === 0 ? [] : [`recorded batches still disturbed after the retries (medians absorb one or two, p90s do not): ${disturbed.join('; ')}.`]),
    ],
  }];

  if (result.concurrency.every(entry => entry.worker !== null)) {
    const rows: string[][] = [];
    const dash = '–';
    for (const entry of result.concurrency) {
      const {peer, rbee} = entry;
      const worker = entry.worker!;
      const breakdown = entry.breakdown!;
      const name = label(entry.concurrency);
      rows.push(
        [`${name}: TTFT ms`, fmt(peer.ttft_ms.median), fmt(worker.ttft_ms.median), fmt(rbee.ttft_ms.median), fmtRatio(breakdown.worker_over_peer.ttft), fmtRatio(breakdown.rbee_over_worker.ttft)],
        [`${name}: per-stream decode tok/s`, fmt(peer.decode_tps_per_stream.median, 2), fmt(worker.decode_tps_per_stream.median, 2), fmt(rbee.decode_tps_per_stream.median, 2), fmtRatio(breakdown.worker_over_peer.decode_tps_per_stream), fmtRatio(breakdown.rbee_over_worker.decode_tps_per_stream)],
        [`${name}: aggregate tok/s`, fmt(peer.aggregate_tps.median, 2), fmt(worker.aggregate_tps.median, 2), fmt(rbee.aggregate_tps.median, 2), fmtRatio(breakdown.worker_over_peer.aggregate_tps), fmtRatio(breakdown.rbee_over_worker.aggregate_tps)],
        [`${name}: last token → closing event ms`, fmt(peer.close_after_last_token_ms.median, 2), fmt(worker.close_after_last_token_ms.median, 2), fmt(rbee.close_after_last_token_ms.median, 2), dash, dash],
        [`${name}: llama-server busy slots per decode`, fmt(peer.server.busy_slots_per_decode, 2), fmt(worker.server.busy_slots_per_decode, 2), fmt(rbee.server.busy_slots_per_decode, 2), fmtRatio(ratio(worker.server.busy_slots_per_decode, peer.server.busy_slots_per_decode)), fmtRatio(ratio(rbee.server.busy_slots_per_decode, worker.server.busy_slots_per_decode))],
        [`${name}: llama-server decode calls per batch`, fmt(peer.server.decode_calls, 0), fmt(worker.server.decode_calls, 0), fmt(rbee.server.decode_calls, 0), fmtRatio(ratio(worker.server.decode_calls, peer.server.decode_calls)), fmtRatio(ratio(rbee.server.decode_calls, worker.server.decode_calls))],
        [`${name}: llama-server processing / deferred, max seen`, `${peer.server.max_processing} / ${peer.server.max_deferred}`, `${worker.server.max_processing} / ${worker.server.max_deferred}`, `${rbee.server.max_processing} / ${rbee.server.max_deferred}`, dash, dash],
        [`${name}: CPU s/batch, llama-server`, fmt(peer.cpu_s_per_batch.llama_server, 2), fmt(worker.cpu_s_per_batch.llama_server, 2), fmt(rbee.cpu_s_per_batch.llama_server, 2), fmtRatio(ratio(worker.cpu_s_per_batch.llama_server, peer.cpu_s_per_batch.llama_server)), fmtRatio(ratio(rbee.cpu_s_per_batch.llama_server, worker.cpu_s_per_batch.llama_server))],
        [`${name}: CPU s/batch, worker (node)`, dash, fmt(worker.cpu_s_per_batch.worker, 2), fmt(rbee.cpu_s_per_batch.worker, 2), dash, dash],
        [`${name}: CPU s/batch, hive (node)`, dash, fmt(worker.cpu_s_per_batch.hive, 2), fmt(rbee.cpu_s_per_batch.hive, 2), dash, dash],
        [`${name}: CPU s/batch, bench client`, fmt(peer.cpu_s_per_batch.bench_client, 2), fmt(worker.cpu_s_per_batch.bench_client, 2), fmt(rbee.cpu_s_per_batch.bench_client, 2), dash, dash],
      );
    }
    tables.push({
      title: `(e) where rbee's cost lies: peer vs the worker asked directly (adapter + worker) vs through the hive (medians)`,
      header: ['measure', 'peer', 'worker direct', 'via hive', 'worker/peer', 'hive/worker'],
      rows,
      notes: [
        'worker direct = streaming POST /v1/infer at the worker\'s own port: the llamacpp adapter and the worker process, no hive.',
        'busy slots per decode and decode calls are Δ of llama-server\'s own /metrics over each batch (n_busy_slots_per_decode × n_decode_total); with 16 streams on 4 slots, 4.00 would be full batches all the time.',
        'processing / deferred: the most requests llama-server\'s /metrics showed in its slots and in its own queue, sampled once a second during the batches; rbee\'s worker holds requests beyond its parallel in its own queue, so llama-server never defers them.',
        'last token → closing event: how long after its last token a stream is told it is done (llama-server\'s stop event; rbee\'s done event, sent once the adapter has read llama-server\'s).',
        'CPU s/batch from /proc/<pid>/stat; the worker direct side runs no hive code, so its hive CPU is the idle hive\'s.',
      ],
    });
  }
  return tables;
}

// ---- standalone: node --import tsx bench/llama-server-overhead.ts [--runs N] [--quick] ----

const resultsDir = fileURLToPath(new URL('./results/', import.meta.url));

type Document = {
  schema: 'rbee-bench-llama-server-overhead/1';
  date: string;
  command: string;
  options: {runs: number; quick: boolean};
  wall_seconds: number;
  load_average: {before: number[]; after: number[]};
  machine: MachineInfo;
  model: ModelInfo;
  llama_server_overhead: LlamaServerOverheadResult;
};

function localDate(date: Date): string {
  const pad = (value: number) => String(value).padStart(2, '0');
  return `${date.getFullYear()}-${pad(date.getMonth() + 1)}-${pad(date.getDate())}`;
}

function writeReport(document: Document, jsonFile: string): void {
  const {machine, model} = document;
  const result = document.llama_server_overhead;
  const tables = llamaServerOverheadTables(result);
  const markdownFile = jsonFile.replace(/\.json$/, '.md');
  fs.writeFileSync(markdownFile, [
    `# rbee benchmark: llama-server alone vs behind rbee, ${document.date.slice(0, 10)}, ${machine.cpu_model} × ${machine.cores} (CPU only)`,
    '',
    '| | |',
    '|:---|:---|',
    `| date | ${document.date} |`,
    `| CPU | ${machine.cpu_model} × ${machine.cores} cores (available parallelism ${machine.available_parallelism}), no GPU |`,
    `| memory | ${machine.memory_gib} GiB |`,
    `| OS | ${machine.platform} ${machine.kernel} ${machine.arch} (host ${machine.hostname}) |`,
    `| Node.js | ${machine.node} |`,
    `| llama.cpp | \`${result.llama_cpp.server_path}\`: ${result.llama_cpp.version.replaceAll('\n', '; ')} |`,
    `| rbee | ${machine.rbee}${machine.git_commit === null ? ' (no commit)' : ` @ ${machine.git_commit.slice(0, 12)}`} |`,
    `| model | ${model.file} (${model.size_bytes} bytes, ${model.size_mib} MiB) at \`${model.path}\` |`,
    `| peer | \`${result.peer.argv.join(' ')}\` |`,
    `| rbee's llama-server | \`${result.rbee.server_argv.join(' ')}\` |`,
    `| command | \`${document.command}\` |`,
    `| wall time | ${document.wall_seconds} s |`,
    `| load average (1/5/15 min) | before ${document.load_average.before.join(' / ')}, after ${document.load_average.after.join(' / ')} |`,
    '',
    'Medians and p90s of repeated, alternating rounds; ratios are of medians. See `bench/README.md`, section (e).',
    '',
    ...tables.flatMap(table => [renderMarkdown(table), '']),
  ].join('\n'));
  process.stdout.write(`\nrbee bench (e): ${machine.cpu_model} × ${machine.cores}, Node ${machine.node}, llama-server ${result.llama_cpp.version.split('\n')[0]}, ${model.file} (${model.size_mib} MiB), ${document.wall_seconds} s\n\n`);
  process.stdout.write(`${tables.map(renderText).join('\n\n')}\n\n`);
  process.stdout.write(`wrote ${path.relative(process.cwd(), jsonFile)} and ${path.relative(process.cwd(), markdownFile)}\n`);
}

async function main(): Promise<void> {
  const argv = process.argv.slice(2);
  const {values} = parseArgs({args: argv, options: {runs: {type: 'string'}, quick: {type: 'boolean', default: false}, help: {type: 'boolean', short: 'h', default: false}}, strict: true});
  if (values.help === true) {
    process.stdout.write('usage: node --import tsx bench/llama-server-overhead.ts [--runs N] [--quick]\n' +
      '  --runs N   rounds per configuration (default 5; --quick: 2)\n');
    return;
  }
  const quick = values.quick === true;
  const runs = values.runs === undefined ? (quick ? 2 : 5) : Number(values.runs);
  if (!Number.isInteger(runs) || runs < 1 || runs > 50) {
    throw new Error(`--runs must be an integer from 1 to 50, not "${values.runs}"`);
  }
  if (!fs.existsSync(path.join(path.dirname(rbeeBin), '..', 'dist', 'cli', 'main.js'))) {
    throw new Error('dist/ is missing: run `npm run build` first');
  }
  if (findLlamaCpp() === null) {
    throw new Error('no cached llama-server build: run `node bin/rbee.js engines install llama.cpp` first');
  }
  // Bounded: whatever happens, the run ends and cleans up by this deadline.
  const deadlineMs = Math.max(20, 10 + runs * 5) * 60_000;
  installExitHandlers(deadlineMs);
  const log = (message: string) => process.stderr.write(`[bench] ${message}\n`);

  const started = new Date();
  const began = performance.now();
  const loadBefore = os.loadavg().map(value => round(value, 2));
  const modelsDir = path.join(os.homedir(), '.cache', 'rbee', 'models');
  const resolved = await resolveModel('default', {modelsDir});
  const model = modelInfo(resolved.name, resolved.path);
  const machine = machineInfo();
  log(`${machine.cpu_model} × ${machine.cores}, Node ${machine.node}; model ${model.file} (${model.size_mib} MiB); ${runs} rounds per configuration`);
  const result = await runLlamaServerOverhead({
    modelPath: model.path,
    rounds: runs,
    concurrencies: [1, 16],
    threads: 2,
    parallel: 4,
    contextSize: 1024,
    maxTokens: 64,
    log,
    // No new round in the last 10 minutes before the deadline: a short run beats none on a busy machine.
    budgetMs: deadlineMs - 10 * 60_000,
  });
  const document: Document = {
    schema: 'rbee-bench-llama-server-overhead/1',
    date: started.toISOString(),
    command: ['node', '--import', 'tsx', 'bench/llama-server-overhead.ts', ...argv].join(' '),
    options: {runs, quick},
    wall_seconds: Math.round((performance.now() - began) / 1000),
    load_average: {before: loadBefore, after: os.loadavg().map(value => round(value, 2))},
    machine,
    model,
    llama_server_overhead: result,
  };
  fs.mkdirSync(resultsDir, {recursive: true});
  const jsonFile = path.join(resultsDir, `${localDate(started)}-${machineSlug(machine)}-llama-server-overhead${quick ? '-quick' : ''}.json`);
  fs.writeFileSync(jsonFile, `${JSON.stringify(document, null, 2)}\n`);
  writeReport(document, jsonFile);
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
