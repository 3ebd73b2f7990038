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
import {
  llamaServerOverheadTables,
  ratios,
  summarizeSide,
  type Batch,
  type ConcurrencyResult,
  type CpuSample,
  type LlamaServerOverheadResult,
  type Side,
} from './lib/llama-server-overhead-report.js';
import {localDate, machineInfo, machineSlug, modelInfo, type MachineInfo, type ModelInfo} from './lib/machine.js';
import {ownCpuSeconds, processCpuSeconds} from './lib/proc-cpu.js';
import {timedStream} from './lib/sse-timing.js';
import {requestMarks} from './lib/startup-timeline.js';
import {startLeanRelay} from './lib/lean-relay.js';
import {runTtftProbe} from './lib/ttft-probe.js';
import {median, round} from './lib/stats.js';
import {renderMarkdown, renderText} from './lib/table.js';
import {prompt} from './routing-overhead.js';

export type LlamaServerOverheadOptions = {
  modelPath: string;
  rounds: number;
  concurrencies: number[];
  /** The worker's threads; unset, llama-server picks (a GPU run needs few). */
  threads?: number;
  /** rbee's device for the worker (default cpu); cuda:N offloads every layer, on the peer too (same argv). */
  device?: string;
  /** A llama-server binary for the adapter (its `serverPath`); default: what the adapter finds. */
  serverPath?: string;
  /** Added to the hive's environment (and so its worker's): NODE_OPTIONS=--cpu-prof, say. */
  hiveEnv?: Record<string, string>;
  /** Told each batch's span on the monotonic clock (ns, process.hrtime.bigint(); round −1: warm-up), so a profile's samples can be cut to it. */
  onBatch?: (span: {side: Side; concurrency: number; round: number; fromNs: bigint; toNs: bigint}) => void;
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
  /** After the rounds, short requests one at a time, each side in turn, back to back (bench/lib/ttft-probe.ts). */
  ttftProbe?: {
    rounds: number;
    warmupRounds: number;
    maxTokens: number;
    /** Also ask a lean two-process relay in front of the peer (lib/lean-relay.ts; default on). */ floor?: boolean;
  };
  /** The hive and its worker mark each request's steps (RBEE_STARTUP_TRACE=1): the probe's timeline. */
  trace?: boolean;
};

const disturbedCores = 0.25;

function expectedAdapterArgs(options: LlamaServerOverheadOptions): string[] {
  // adapters/llamacpp/src/llama-server-engine.ts, LlamaServerEngine.start, on device cpu.
  return [
    '--model',
    options.modelPath,
    '--host',
    '127.0.0.1',
    '--port',
    '<port>',
    '--ctx-size',
    String(options.contextSize * options.parallel),
    '--parallel',
    String(options.parallel),
    '--n-gpu-layers',
    (options.device ?? 'cpu') === 'cpu' ? '0' : '999',
    '--metrics',
    '--slots',
    '--no-webui',
    '--jinja',
    ...(options.threads === undefined ? [] : ['--threads', String(options.threads)]),
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

async function startRbee(
  options: LlamaServerOverheadOptions,
  configFile: string,
): Promise<{
  hive: HiveProcess;
  workerId: string;
  workerUrl: string;
  workerKey: string;
  workerPid: number;
  readyMs: number;
  serverPid: number;
  serverArgv: string[];
  serverKey: string | undefined;
}> {
  const env = {...options.hiveEnv, ...(options.trace === true ? {RBEE_STARTUP_TRACE: '1'} : {})};
  const hive = await startHiveProcess({args: ['--config', configFile], env});
  options.log(`hive ${hive.url} (pid ${hive.pid}), config ${configFile}`);
  try {
    const began = performance.now();
    const created = await hive.client.spawnWorker(
      {
        model: options.modelPath,
        device: options.device ?? 'cpu',
        ...(options.threads === undefined ? {} : {threads: options.threads}),
        parallel: options.parallel,
        context_size: options.contextSize,
      },
      {timeoutMs: 60_000},
    );
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
      throw new Error(
        `worker ${workerId} (pid ${info.pid}) runs ${servers.length} llama-server processes, not 1: did the config's engine "llama-server" apply?`,
      );
    }
    const serverPid = servers[0]!;
    // The worker's port and its llama-server each demand a key: the worker's from the hive, the engine's from its environment.
    const key = await hive.client.workerKey(workerId);
    const serverKey = fs
      .readFileSync(`/proc/${serverPid}/environ`, 'utf8')
      .split('\0')
      .find(entry => entry.startsWith('LLAMA_API_KEY='))
      ?.slice('LLAMA_API_KEY='.length);
    return {hive, workerId, workerUrl: info.url, workerKey: key.key, workerPid: info.pid, readyMs, serverPid, serverArgv: cmdline(serverPid), serverKey};
  } catch (error) {
    await hive.stop();
    throw error;
  }
}

export async function runLlamaServerOverhead(options: LlamaServerOverheadOptions): Promise<LlamaServerOverheadResult> {
  const runBegan = performance.now();
  const workerDirect = options.workerDirect ?? true;
  const cached = findLlamaCpp();
  const project = fs.mkdtempSync(path.join(os.tmpdir(), 'rbee-bench-llama-server-'));
  const configFile = path.join(project, 'rbee.config.json');
  const rbeeConfig = {types: {llamacpp: {engine: 'llama-server', ...(options.serverPath === undefined ? {} : {serverPath: options.serverPath})}}};
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
    options.log(
      `worker ${rbee.workerId} ready in ${rbee.readyMs.toFixed(0)} ms (pid ${rbee.workerPid}); its llama-server (pid ${rbee.serverPid}): ${rbee.serverArgv.join(' ')}`,
    );
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
    const target: Record<
      Side,
      {url: string; body: Record<string, unknown>; format: 'llama-server' | 'rbee'; serverUrl: string; headers?: Record<string, string>; serverKey?: string}
    > = {
      // What the adapter sends to its llama-server for a /v1/infer (llama-server-engine.ts #complete).
      peer: {
        url: `${peer.url}/completion`,
        body: {prompt, n_predict: options.maxTokens, cache_prompt: true, temperature: 0, seed: 1},
        format: 'llama-server',
        serverUrl: peer.url,
      },
      rbee: {
        url: `${rbee.hive.url}/v1/infer`,
        body: {prompt, max_tokens: options.maxTokens, temperature: 0, seed: 1},
        format: 'rbee',
        serverUrl: workerServerUrl,
        ...(rbee.serverKey === undefined ? {} : {serverKey: rbee.serverKey}),
      },
      worker: {
        url: `${rbee.workerUrl}/v1/infer`,
        body: {prompt, max_tokens: options.maxTokens, temperature: 0, seed: 1},
        format: 'rbee',
        serverUrl: workerServerUrl,
        headers: {authorization: `Bearer ${rbee.workerKey}`},
        ...(rbee.serverKey === undefined ? {} : {serverKey: rbee.serverKey}),
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
        const foreign = (after.machine_busy - before.machine_busy - (trackedOf(after) - trackedOf(before))) / ((performance.now() - from) / 1000);
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
            const seen = await scrapeMetrics(serverUrl, serverKey).catch(() => ({}) as Record<string, number>);
            queue.maxProcessing = Math.max(queue.maxProcessing, seen['llamacpp:requests_processing'] ?? 0);
            queue.maxDeferred = Math.max(queue.maxDeferred, seen['llamacpp:requests_deferred'] ?? 0);
          }
        }
      })();
      const began = performance.now();
      const beganNs = process.hrtime.bigint();
      const streams = await Promise.all(
        Array.from({length: concurrency}, () => timedStream(url, body, format, options.streamTimeoutMs ?? 600_000, headers)),
      ).finally(() => {
        queue.sampling = false;
      });
      const wall = performance.now() - began;
      options.onBatch?.({side, concurrency, round: roundIndex, fromNs: beganNs, toNs: process.hrtime.bigint()});
      const cpuAfter = cpuNow();
      await sampler;
      const metricsAfter = await scrapeMetrics(serverUrl, serverKey);
      const delta = Object.fromEntries(
        Object.keys(cpuBefore).map(key => [key, cpuAfter[key as keyof CpuSample] - cpuBefore[key as keyof CpuSample]]),
      ) as CpuSample;
      const tracked = trackedOf(delta);
      const metric = (name: string, source: Record<string, number>) => source[`llamacpp:${name}`] ?? Number.NaN;
      const decodeCalls = metric('n_decode_total', metricsAfter) - metric('n_decode_total', metricsBefore);
      // n_busy_slots_per_decode is a lifetime average: recover the Δ of its numerator.
      const busySlots =
        metric('n_busy_slots_per_decode', metricsAfter) * metric('n_decode_total', metricsAfter) -
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
            options.log(
              `c=${concurrency} round ${roundIndex + 1}/${options.rounds} ${side.padEnd(6)}: TTFT median ${median(result.streams.map(stream => stream.ttftMs)).toFixed(0)} ms, ` +
                `per-stream ${median(result.streams.map(stream => stream.decodeTokensPerSecond)).toFixed(1)} tok/s, aggregate ${result.aggregate_tps.toFixed(1)} tok/s, ` +
                `wall ${result.wall_ms.toFixed(0)} ms${result.quiet.waited_ms > 1_500 ? ` (after ${(result.quiet.waited_ms / 1000).toFixed(1)} s waiting for quiet)` : ''}, busy slots/decode ${result.server.busy_slots_per_decode.toFixed(2)}, ` +
                `other processes ${foreignCores(result).toFixed(2)} cores${again ? ': disturbed, running it again' : ''}`,
            );
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

    // The floor: what any relay of two Node processes adds in front of the same llama-server, same rounds.
    const lean = options.ttftProbe === undefined || options.ttftProbe.floor === false ? null : await startLeanRelay(peer.url);
    let ttftProbe: Awaited<ReturnType<typeof runTtftProbe>> | null;
    try {
      ttftProbe =
        options.ttftProbe === undefined
          ? null
          : await runTtftProbe({
              ...options.ttftProbe,
              targets: {
                peer: target.peer,
                worker: target.worker,
                rbee: target.rbee,
                ...(lean === null ? {} : {floor: {url: `${lean.url}/v1/infer`, body: target.rbee.body, format: 'rbee' as const}}),
              },
              marks:
                options.trace === true
                  ? () => requestMarks({hiveStderr: running.rbee.hive.stderr(), hiveHome: running.rbee.hive.home, workerId: running.rbee.workerId})
                  : null,
              log: options.log,
            });
    } finally {
      lean?.close();
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
        threads: options.threads ?? null,
        device: options.device ?? 'cpu',
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
      ttft_probe: ttftProbe,
      stop_ms: stopMs,
      leaks,
    };
  } finally {
    if (peer !== null) {
      stopMs.peer = round(await peer.stop(), 1);
    }
    if (rbee !== null) {
      stopMs.hive = round(await rbee.hive.stop(), 1);
      for (const [what, pid] of [
        ['worker', rbee.workerPid],
        ['worker llama-server', rbee.serverPid],
      ] as const) {
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

function writeReport(document: Document, jsonFile: string): void {
  const {machine, model} = document;
  const result = document.llama_server_overhead;
  const tables = llamaServerOverheadTables(result);
  const markdownFile = jsonFile.replace(/\.json$/, '.md');
  fs.writeFileSync(
    markdownFile,
    [
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
    ].join('\n'),
  );
  process.stdout.write(
    `\nrbee bench (e): ${machine.cpu_model} × ${machine.cores}, Node ${machine.node}, llama-server ${result.llama_cpp.version.split('\n')[0]}, ${model.file} (${model.size_mib} MiB), ${document.wall_seconds} s\n\n`,
  );
  process.stdout.write(`${tables.map(renderText).join('\n\n')}\n\n`);
  process.stdout.write(`wrote ${path.relative(process.cwd(), jsonFile)} and ${path.relative(process.cwd(), markdownFile)}\n`);
}

async function main(): Promise<void> {
  const argv = process.argv.slice(2);
  const {values} = parseArgs({
    args: argv,
    options: {runs: {type: 'string'}, quick: {type: 'boolean', default: false}, help: {type: 'boolean', short: 'h', default: false}},
    strict: true,
  });
  if (values.help === true) {
    process.stdout.write(
      'usage: node --import tsx bench/llama-server-overhead.ts [--runs N] [--quick]\n' + '  --runs N   rounds per configuration (default 5; --quick: 2)\n',
    );
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

// By name too: bundled into another bench (gpu-relay.mjs), import.meta.url is that bench's file.
const invokedDirectly =
  process.argv[1] !== undefined &&
  import.meta.url === pathToFileURL(path.resolve(process.argv[1])).href &&
  path.basename(process.argv[1]).startsWith('llama-server-overhead');
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
