/**
 * (b) Routing overhead: the same worker, asked directly and through the hive that routes to it.
 *
 * One hive, one worker (threads 2, parallel 4, 1024 tokens of context per sequence). For 1 and
 * 16 concurrent streams, rounds alternate direct → hive and hive → direct. Each stream is a
 * streaming POST /v1/infer {prompt, max_tokens: 64, temperature: 0, seed: 1}; the client times
 * the first `token` event (TTFT) and the `done` event:
 *   per-stream decode tok/s = (tokens_generated - 1) / (t_done - t_first)
 *   aggregate tok/s         = Σ tokens_generated / (wall time of the whole batch)
 * With 16 streams on 4 sequences, 12 wait in the worker's queue: their TTFT includes the wait.
 * Then the hive's added latency for a tiny non-streamed request (max_tokens 1), alternating
 * direct and hive request by request.
 */
import {HiveClient} from '../src/protocol/hive-client.js';
import {startHiveProcess} from './lib/hive-process.js';
import {waitUntilReady} from './lib/hive-workers.js';
import {sleep, streamInfer, type StreamTiming} from './lib/http.js';
import {median, ratio, round, roundSummary, summarize, type Summary} from './lib/stats.js';

export type RoutingOptions = {
  modelPath: string;
  rounds: number;
  concurrencies: number[];
  tinyRequests: number;
  threads: number;
  parallel: number;
  contextSize: number;
  maxTokens: number;
  log: (message: string) => void;
};

type Path = 'direct' | 'hive';

type Batch = {round: number; path: Path; concurrency: number; wall_ms: number; tokens: number; aggregate_tps: number; streams: StreamTiming[]};

export type PathSummary = {
  ttft_ms: Summary;
  decode_tps_per_stream: Summary;
  aggregate_tps: Summary;
  tokens_per_stream: Summary;
  batch_wall_ms: Summary;
};

export type ConcurrencyResult = {
  concurrency: number;
  rounds: number;
  direct: PathSummary;
  hive: PathSummary;
  /** hive / direct, of the medians: > 1 for TTFT means the hive is slower; < 1 for tok/s means it is slower. */
  ratio: {ttft: number; decode_tps_per_stream: number; aggregate_tps: number};
  batches: Array<Omit<Batch, 'streams'> & {ttft_ms: number[]; decode_tps: number[]}>;
};

export type TinyResult = {
  requests_each: number;
  direct_ms: Summary;
  hive_ms: Summary;
  ratio: number;
  /** median(hive) - median(direct), in ms. */
  added_ms: number;
  samples: {direct_ms: number[]; hive_ms: number[]};
};

export type RoutingResult = {
  config: {
    threads: number;
    parallel: number;
    context_size_per_sequence: number;
    max_tokens: number;
    temperature: 0;
    seed: 1;
    prompt: string;
    tiny_prompt: string;
    rounds: number;
  };
  worker: {ready_ms: number};
  concurrency: ConcurrencyResult[];
  tiny: TinyResult;
  hive_stop_ms: number;
};

export const prompt = 'The honey bee is a social insect that lives in large colonies. In this article we describe how a hive is organised, how';
const tinyPrompt = 'Hi';

async function batch(client: HiveClient, round: number, path: Path, concurrency: number, maxTokens: number): Promise<Batch> {
  const began = performance.now();
  const streams = await Promise.all(Array.from({length: concurrency}, () => streamInfer(client, {prompt, max_tokens: maxTokens, temperature: 0, seed: 1})));
  const wall = performance.now() - began;
  const tokens = streams.reduce((sum, stream) => sum + stream.tokensGenerated, 0);
  return {round, path, concurrency, wall_ms: wall, tokens, aggregate_tps: tokens / (wall / 1000), streams};
}

function summarizePath(batches: Batch[]): PathSummary {
  const streams = batches.flatMap(entry => entry.streams);
  return {
    ttft_ms: roundSummary(summarize(streams.map(stream => stream.ttftMs)), 1),
    decode_tps_per_stream: roundSummary(summarize(streams.map(stream => stream.decodeTokensPerSecond)), 2),
    aggregate_tps: roundSummary(summarize(batches.map(entry => entry.aggregate_tps)), 2),
    tokens_per_stream: roundSummary(summarize(streams.map(stream => stream.tokensGenerated)), 1),
    batch_wall_ms: roundSummary(summarize(batches.map(entry => entry.wall_ms)), 1),
  };
}

async function tinyOnce(client: HiveClient): Promise<number> {
  const began = performance.now();
  await client.infer({prompt: tinyPrompt, max_tokens: 1, temperature: 0, seed: 1}, {timeoutMs: 60_000});
  return performance.now() - began;
}

export async function runRoutingOverhead(options: RoutingOptions): Promise<RoutingResult> {
  // The hive's default heartbeat interval (5 s): this measures routing, not heartbeat traffic.
  const hive = await startHiveProcess();
  options.log(`hive ${hive.url} (pid ${hive.pid})`);
  let result: RoutingResult;
  let hiveStopMs = Number.NaN;
  try {
    const spawnBegan = performance.now();
    const created = await hive.client.spawnWorker(
      {
        model: options.modelPath,
        threads: options.threads,
        parallel: options.parallel,
        context_size: options.contextSize,
      },
      {timeoutMs: 60_000},
    );
    const id = created.worker_id;
    const info = await waitUntilReady(hive, id, {timeoutMs: 120_000, intervalMs: 50});
    const readyMs = performance.now() - spawnBegan;
    // The worker's own port speaks the same /v1/infer, and answers only with the key the hive gives.
    const {key} = await hive.client.workerKey(id);
    const clients: Record<Path, HiveClient> = {direct: new HiveClient({url: info.url, token: key}), hive: hive.client};
    options.log(`worker ${id} ready in ${readyMs.toFixed(0)} ms at ${info.url} (pid ${info.pid})`);

    // Warm-up, not recorded: both paths, one stream and one full set of sequences.
    for (const path of ['direct', 'hive'] as const) {
      await batch(clients[path], -1, path, 1, options.maxTokens);
    }
    await batch(clients.direct, -1, 'direct', options.parallel, options.maxTokens);
    await tinyOnce(clients.direct);
    await tinyOnce(clients.hive);

    const concurrency: ConcurrencyResult[] = [];
    for (const streams of options.concurrencies) {
      const batches: Batch[] = [];
      for (let round = 0; round < options.rounds; round++) {
        const order: Path[] = round % 2 === 0 ? ['direct', 'hive'] : ['hive', 'direct'];
        for (const path of order) {
          await sleep(200);
          const result = await batch(clients[path], round, path, streams, options.maxTokens);
          batches.push(result);
          options.log(
            `c=${streams} round ${round + 1}/${options.rounds} ${path.padEnd(6)}: TTFT median ${median(result.streams.map(stream => stream.ttftMs)).toFixed(0)} ms, ` +
              `per-stream ${median(result.streams.map(stream => stream.decodeTokensPerSecond)).toFixed(1)} tok/s, aggregate ${result.aggregate_tps.toFixed(1)} tok/s, wall ${result.wall_ms.toFixed(0)} ms`,
          );
        }
      }
      const direct = summarizePath(batches.filter(entry => entry.path === 'direct'));
      const viaHive = summarizePath(batches.filter(entry => entry.path === 'hive'));
      concurrency.push({
        concurrency: streams,
        rounds: options.rounds,
        direct,
        hive: viaHive,
        ratio: {
          ttft: round(ratio(viaHive.ttft_ms.median, direct.ttft_ms.median), 3),
          decode_tps_per_stream: round(ratio(viaHive.decode_tps_per_stream.median, direct.decode_tps_per_stream.median), 3),
          aggregate_tps: round(ratio(viaHive.aggregate_tps.median, direct.aggregate_tps.median), 3),
        },
        batches: batches.map(({streams: timings, ...rest}) => ({
          ...rest,
          wall_ms: round(rest.wall_ms, 1),
          aggregate_tps: round(rest.aggregate_tps, 2),
          ttft_ms: timings.map(timing => round(timing.ttftMs, 1)),
          decode_tps: timings.map(timing => round(timing.decodeTokensPerSecond, 2)),
        })),
      });
    }

    const tiny: Record<Path, number[]> = {direct: [], hive: []};
    for (let index = 0; index < options.tinyRequests; index++) {
      const order: Path[] = index % 2 === 0 ? ['direct', 'hive'] : ['hive', 'direct'];
      for (const path of order) {
        tiny[path].push(await tinyOnce(clients[path]));
      }
    }
    const tinyDirect = summarize(tiny.direct);
    const tinyHive = summarize(tiny.hive);
    options.log(`tiny (max_tokens 1) x${options.tinyRequests}: direct median ${tinyDirect.median.toFixed(2)} ms, hive median ${tinyHive.median.toFixed(2)} ms`);

    const stopped = await hive.client.stopWorker(id, {timeoutMs: 60_000});
    if (stopped.state !== 'stopped') {
      options.log(`odd: DELETE /v1/workers/${id} answered with state ${stopped.state}`);
    }

    result = {
      config: {
        threads: options.threads,
        parallel: options.parallel,
        context_size_per_sequence: options.contextSize,
        max_tokens: options.maxTokens,
        temperature: 0,
        seed: 1,
        prompt,
        tiny_prompt: tinyPrompt,
        rounds: options.rounds,
      },
      worker: {ready_ms: round(readyMs, 1)},
      concurrency,
      tiny: {
        requests_each: options.tinyRequests,
        direct_ms: roundSummary(tinyDirect, 2),
        hive_ms: roundSummary(tinyHive, 2),
        ratio: round(ratio(tinyHive.median, tinyDirect.median), 3),
        added_ms: round(tinyHive.median - tinyDirect.median, 2),
        samples: {direct_ms: tiny.direct.map(value => round(value, 2)), hive_ms: tiny.hive.map(value => round(value, 2))},
      },
      hive_stop_ms: Number.NaN,
    };
  } finally {
    hiveStopMs = await hive.stop();
  }
  return {...result, hive_stop_ms: round(hiveStopMs, 1)};
}
