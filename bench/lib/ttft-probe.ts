/**
 * The relay's share of the time to first token, read from many short requests instead of a few
 * long batches: one request at a time, each side in turn (straight to the engine, the worker at
 * its own port, through the hive), back to back with no wait for quiet between them, after a
 * warm-up that is not counted (a serving hive runs V8's optimized code for its request path; the
 * first few hundred requests do not: on the 2-core VM rbee adds ~1 ms more after 30 requests than
 * after 3,000). What the worker and the hive add is the median of each round's
 * paired difference, so the engine's own drift (llama-server's first token varies by milliseconds)
 * falls out. With the hive and worker tracing (RBEE_STARTUP_TRACE=1), each request through the
 * hive also gets its timeline: the medians say which step the added time sits in.
 */
import {requestTimeline, type TraceMark, type TimelineStep} from './startup-timeline.js';
import {timedStream, type StreamFormat} from './sse-timing.js';
import {median, round, roundSummary, summarize, type Summary} from './stats.js';
import {fmt, type Table} from './table.js';

export type ProbeSide = 'peer' | 'worker' | 'rbee' | 'floor';

export type ProbeTarget = {url: string; body: Record<string, unknown>; format: StreamFormat; headers?: Record<string, string>};

export type TtftProbeResult = {
  rounds: number;
  warmup_rounds: number;
  max_tokens: number;
  /** Request sent → first token event, ms, per side (`floor` only when it was asked). */
  ttft_ms: Record<Exclude<ProbeSide, 'floor'>, Summary> & {floor?: Summary};
  /**
   * Medians over rounds of (side − peer) and (rbee − worker), ms; `floor`: what bench/relay-floor.mjs's
   * lean two-process relay in front of the peer engine adds (what any two Node processes in the path cost).
   */
  added_ms_paired: {worker: number; hive: number; total: number; floor?: number};
  /** Through the hive, step by step (only when the hive and worker traced their requests). */
  timeline: Array<TimelineStep & {seen: number}> | null;
  traced: boolean;
};

export async function runTtftProbe(options: {
  /** `floor`: a lean relay in front of the peer (lib/lean-relay.ts), asked in the same rounds; optional. */
  targets: Record<Exclude<ProbeSide, 'floor'>, ProbeTarget> & {floor?: ProbeTarget};
  rounds: number;
  warmupRounds: number;
  maxTokens: number;
  /** The hive's and worker's request marks, read after the rounds (tracing on), or null. */
  marks: (() => Array<TraceMark & {source: 'hive' | 'worker'}>) | null;
  log: (message: string) => void;
}): Promise<TtftProbeResult> {
  const sides: ProbeSide[] = ['peer', 'worker', 'rbee', ...(options.targets.floor === undefined ? [] : (['floor'] as const))];
  const samples: Record<ProbeSide, number[]> = {peer: [], worker: [], rbee: [], floor: []};
  const throughHive: Array<{sentAt: number; ms: number}> = [];
  for (let r = 0; r < options.warmupRounds + options.rounds; r++) {
    // Alternate the order so no side always follows the same one.
    for (const side of r % 2 === 0 ? sides : [...sides].reverse()) {
      const {url, body, format, headers} = options.targets[side]!;
      const stream = await timedStream(
        url,
        {...body, ...(format === 'rbee' ? {max_tokens: options.maxTokens} : {n_predict: options.maxTokens})},
        format,
        60_000,
        headers,
      );
      if (r >= options.warmupRounds) {
        samples[side].push(stream.ttftMs);
        if (side === 'rbee') {
          throughHive.push({sentAt: performance.timeOrigin + stream.startedAt, ms: stream.ttftMs});
        }
      }
    }
  }
  const paired = (a: number[], b: number[]) => round(median(a.map((value, i) => value - b[i]!)), 3);
  const result: TtftProbeResult = {
    rounds: options.rounds,
    warmup_rounds: options.warmupRounds,
    max_tokens: options.maxTokens,
    ttft_ms: {
      peer: roundSummary(summarize(samples.peer), 3),
      worker: roundSummary(summarize(samples.worker), 3),
      rbee: roundSummary(summarize(samples.rbee), 3),
      ...(samples.floor.length === 0 ? {} : {floor: roundSummary(summarize(samples.floor), 3)}),
    },
    added_ms_paired: {
      worker: paired(samples.worker, samples.peer),
      hive: paired(samples.rbee, samples.worker),
      total: paired(samples.rbee, samples.peer),
      ...(samples.floor.length === 0 ? {} : {floor: paired(samples.floor, samples.peer)}),
    },
    timeline: options.marks === null ? null : requestTimeline(options.marks(), throughHive),
    traced: options.marks !== null,
  };
  options.log(
    `TTFT probe, ${options.rounds} rounds: medians peer ${result.ttft_ms.peer.median} ms, worker ${result.ttft_ms.worker.median} ms, hive ${result.ttft_ms.rbee.median} ms; ` +
      `added (paired) by the worker ${result.added_ms_paired.worker} ms, by the hive ${result.added_ms_paired.hive} ms, in all ${result.added_ms_paired.total} ms` +
      (result.added_ms_paired.floor === undefined ? '' : `; a lean two-process relay adds ${result.added_ms_paired.floor} ms`),
  );
  return result;
}

const signedMs = (value: number) => `${value >= 0 ? '+' : ''}${fmt(value, 3)} ms`;

export function ttftProbeTables(probe: TtftProbeResult): Table[] {
  const tables: Table[] = [
    {
      title: `Time to first token, one short request at a time, back to back (${probe.rounds} rounds after ${probe.warmup_rounds} not counted, ${probe.max_tokens} tokens each${probe.traced ? '; hive and worker tracing' : ''})`,
      header: ['side', 'median ms', 'p90 ms', 'min ms', 'added vs straight (paired)'],
      rows: [
        ['straight (llama-server)', fmt(probe.ttft_ms.peer.median, 3), fmt(probe.ttft_ms.peer.p90, 3), fmt(probe.ttft_ms.peer.min, 3), ''],
        [
          'worker at its own port',
          fmt(probe.ttft_ms.worker.median, 3),
          fmt(probe.ttft_ms.worker.p90, 3),
          fmt(probe.ttft_ms.worker.min, 3),
          signedMs(probe.added_ms_paired.worker),
        ],
        [
          'through the hive',
          fmt(probe.ttft_ms.rbee.median, 3),
          fmt(probe.ttft_ms.rbee.p90, 3),
          fmt(probe.ttft_ms.rbee.min, 3),
          `${signedMs(probe.added_ms_paired.total)} (the hive alone ${signedMs(probe.added_ms_paired.hive)})`,
        ],
        ...(probe.ttft_ms.floor === undefined || probe.added_ms_paired.floor === undefined
          ? []
          : [
              [
                'lean two-process relay (floor)',
                fmt(probe.ttft_ms.floor.median, 3),
                fmt(probe.ttft_ms.floor.p90, 3),
                fmt(probe.ttft_ms.floor.min, 3),
                signedMs(probe.added_ms_paired.floor),
              ],
            ]),
      ],
      notes: [
        'each round asks the sides in turn (order reversed every other round), no pause between requests; "paired" = the median over rounds of that round\'s difference.',
        ...(probe.ttft_ms.floor === undefined
          ? []
          : [
              "floor = bench/relay-floor.mjs's lean relay (two Node processes doing the least a hive and a worker must, none of rbee's code) in front of the straight llama-server, asked by its OpenAI /v1/completions: what any such relay adds here.",
            ]),
        ...(probe.traced
          ? ['tracing writes a line to stderr per step in the hive and the worker: compare its steps, not its totals, with an untraced run.']
          : []),
      ],
    },
  ];
  if (probe.timeline !== null) {
    let previous = 0;
    tables.push({
      title: 'A request through the hive, step by step: medians of ms since it was sent (RBEE_STARTUP_TRACE marks)',
      header: ['step', 'at ms', 'step took ms', 'requests with it'],
      rows: probe.timeline.map(step => {
        const row = [step.step, fmt(step.ms, 3), fmt(step.ms - previous, 3), String(step.seen)];
        previous = step.ms;
        return row;
      }),
      notes: ["the marks' clock is the machine's (epoch ms, µs digits), shared by every process."],
    });
  }
  return tables;
}
