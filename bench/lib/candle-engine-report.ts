/**
 * The results of bench/candle-engine.ts: the document written to results/*.json, its summary
 * (medians, p90s, ratios of medians, implied memory bandwidth) and its tables.
 */
import type {GpuInfo} from './gpu-info.js';
import type {MachineInfo, ModelInfo} from './machine.js';
import type {SpeedMeasurement} from './speed-engine.js';
import {ratio, round, roundSummary, summarize, type Summary} from './stats.js';
import {fmt, fmtRatio, renderMarkdown, type Table} from './table.js';

export type CandleSample = SpeedMeasurement & {
  round: number;
  engine: string;
  /** Position in its round (0 = first). */
  order: number;
  wall_ms: number;
  /** Cores other processes used during the sample, on average (NaN → null where /proc/stat is missing). */
  foreign_cores: number | null;
  /** How long the sample waited for the machine to be quiet first. */
  quiet_wait_ms: number;
  /** 0 for the first try of this engine in this round, 1, 2 … for the tries after a disturbed one. */
  attempt: number;
  /** A disturbed try that was run again: kept in the JSON, left out of the medians. */
  discarded: boolean;
};

export type EngineSummary = {
  name: string;
  prompt_tps: Summary;
  decode_tps: Summary;
  generated_tokens: Summary;
  /** Cores the process kept busy during a generation (in-process engines only; n 0 for llama-bench). Absent from early results. */
  process_cores?: Summary;
  /** Model file bytes × median decode tok/s: the bandwidth decode would need if every step read the whole file once. */
  decode_gbps: number;
  /** decode_gbps ÷ the GPU's peak memory bandwidth; null on the CPU or an unknown card. */
  roofline_fraction: number | null;
};

export type PeerRatio = {peer: string; prompt: number; decode: number};

export type TokenAgreement = {peer: string; agreed: number; compared: number; first_divergence: number | null};

export type CandleBenchDocument = {
  schema: 'rbee-bench-candle/1';
  date: string;
  command: string;
  options: {
    device: string;
    /** The candle side's forward path as asked (null: the engine default); absent in older files. */
    forward?: string | null;
    threads: number;
    prompt_tokens: number;
    decode_tokens: number;
    context_size: number;
    runs: number;
    peers: string[];
    label: string | null;
    quiet_gate: {cores: number; max_wait_ms: number; retries_of_disturbed_samples: number};
  };
  wall_seconds: number;
  load_average: {before: number[]; after: number[]};
  machine: MachineInfo;
  gpu: GpuInfo | null;
  roofline_tbps: number | null;
  model: ModelInfo;
  engines: Array<{name: string; description: Record<string, unknown>; warmup: SpeedMeasurement}>;
  /** Greedy tokens of each in-process peer's warm-up against candle's: the same tokens mean the same work. */
  token_agreement: TokenAgreement[];
  samples: CandleSample[];
  summary: {engines: EngineSummary[]; ratios: PeerRatio[]};
};

/** Samples during which other processes used more than this many cores are disturbed: run again (within --retries), else listed. */
export const disturbedCores = 0.25;

export function isDisturbed(sample: CandleSample): boolean {
  return sample.foreign_cores !== null && sample.foreign_cores > disturbedCores;
}

export function summarizeSamples(
  samples: readonly CandleSample[],
  engineNames: readonly string[],
  modelBytes: number,
  rooflineTBps: number | null,
): CandleBenchDocument['summary'] {
  const engines = engineNames.map((name): EngineSummary => {
    const own = samples.filter(sample => sample.engine === name && sample.discarded !== true);
    const decode = summarize(own.map(sample => sample.decode_tps));
    const gbps = (modelBytes * decode.median) / 1e9;
    return {
      name,
      prompt_tps: roundSummary(summarize(own.map(sample => sample.prompt_tps))),
      decode_tps: roundSummary(decode),
      generated_tokens: roundSummary(summarize(own.map(sample => sample.generated_tokens)), 1),
      process_cores: roundSummary(summarize(own.map(sample => sample.process_cores ?? Number.NaN)), 2),
      decode_gbps: round(gbps, 3),
      roofline_fraction: rooflineTBps === null ? null : round(gbps / (rooflineTBps * 1000), 4),
    };
  });
  const candle = engines.find(engine => engine.name === 'candle');
  const ratios =
    candle === undefined
      ? []
      : engines
          .filter(engine => engine !== candle)
          .map(peer => ({
            peer: peer.name,
            prompt: round(ratio(candle.prompt_tps.median, peer.prompt_tps.median), 4),
            decode: round(ratio(candle.decode_tps.median, peer.decode_tps.median), 4),
          }));
  return {engines, ratios};
}

function reading(value: number): string {
  if (!Number.isFinite(value)) {
    return '–';
  }
  return value >= 1 ? 'candle at least as fast' : `candle ${fmt((1 - value) * 100, 0)}% slower`;
}

export function candleTables(document: CandleBenchDocument): Table[] {
  const {options, summary} = document;
  const onGpu = options.device !== 'cpu';
  const header = [
    'engine',
    'prompt tok/s median',
    'prompt p90',
    'decode tok/s median',
    'decode p90',
    'tokens decoded',
    'cores busy',
    'implied GB/s',
    ...(onGpu ? ['of roofline'] : []),
  ];
  const rows = summary.engines.map(engine => [
    engine.name,
    fmt(engine.prompt_tps.median),
    fmt(engine.prompt_tps.p90),
    fmt(engine.decode_tps.median, 2),
    fmt(engine.decode_tps.p90, 2),
    fmt(engine.generated_tokens.median, 0),
    fmt(engine.process_cores?.median, 2),
    fmt(engine.decode_gbps, 2),
    ...(onGpu ? [engine.roofline_fraction === null ? '–' : `${fmt(engine.roofline_fraction * 100, 1)}%`] : []),
  ]);
  const recorded = document.samples.filter(sample => sample.discarded !== true);
  const discarded = document.samples.length - recorded.length;
  const disturbed = recorded.filter(isDisturbed);
  const short = recorded.filter(sample => sample.generated_tokens < options.decode_tokens);
  const agreement = document.token_agreement.map(
    entry =>
      `${entry.peer}: ${entry.agreed}/${entry.compared} greedy tokens the same as candle's${entry.first_divergence === null ? '' : ` (first divergence at ${entry.first_divergence})`}`,
  );
  const llamaBench = document.engines.find(engine => engine.name === 'llama-bench');
  const where = onGpu
    ? `${options.device}${document.gpu === null ? '' : ` (${document.gpu.name})`}${document.roofline_tbps === null ? '' : `, roofline ${document.roofline_tbps} TB/s`}`
    : 'CPU';
  const speeds: Table = {
    title: `candle engine vs llama.cpp: ${document.model.file} on ${where}, threads ${options.threads}, prompt ${options.prompt_tokens} tokens, decode ${options.decode_tokens} tokens, context ${options.context_size}; ${options.runs} rounds, rotating order`,
    header,
    rows,
    notes: [
      'prompt tok/s = prompt tokens ÷ (request → first generated token); decode tok/s = (tokens generated − 1) ÷ (first → last generated token): single-token forward passes per second. llama-bench: avg_ts of its pp and tg tests.',
      "cores busy = Δ CPU time of this process ÷ wall time over a whole generation (prompt and decode), in-process engines only: llama.cpp's threads spin-wait between steps, so for it this is close to the thread count whatever the work.",
      `implied GB/s = model file (${fmt(document.model.size_bytes / 1e6, 1)} MB) × median decode tok/s: what decoding would read if every step read all the weights once${onGpu ? '; "of roofline" sets it against the card\'s peak memory bandwidth' : ''}.`,
      ...(agreement.length === 0 ? [] : [`same work: ${agreement.join('; ')}.`]),
      ...(short.length === 0
        ? []
        : [
            `samples that stopped at an end-of-generation token before ${options.decode_tokens} tokens (their decode tok/s is over the tokens they made): ${short.map(sample => `${sample.engine} round ${sample.round + 1} (${sample.generated_tokens})`).join(', ')}.`,
          ]),
      ...(llamaBench === undefined
        ? []
        : [
            `llama-bench evaluates random prompt tokens and decodes from an empty cache (depth 0); the in-process sides decode after the prompt. \`${['llama-bench', ...((llamaBench.description.args as string[] | undefined) ?? [])].join(' ')}\`.`,
          ]),
      `disturbed tries (other processes above ${disturbedCores} of a core during the sample) run again and left out of the medians: ${discarded} (at most ${options.quiet_gate.retries_of_disturbed_samples ?? 0} per sample; the JSON keeps them).`,
      disturbed.length === 0
        ? 'no recorded sample was disturbed.'
        : `recorded samples still disturbed after the retries (the medians absorb one or two, p90s do not): ${disturbed.map(sample => `${sample.engine} round ${sample.round + 1} (${fmt(sample.foreign_cores, 2)} cores)`).join(', ')}.`,
    ],
  };
  const ratios: Table = {
    title: 'candle / llama.cpp, ratio of medians (≥ 1.0: candle at least as fast; the goal)',
    header: ['peer', 'prompt', 'decode', 'prompt: reading', 'decode: reading'],
    rows: summary.ratios.map(entry => [entry.peer, fmtRatio(entry.prompt), fmtRatio(entry.decode), reading(entry.prompt), reading(entry.decode)]),
    notes: [`per-step decode time, medians: ${summary.engines.map(engine => `${engine.name} ${fmt(1000 / engine.decode_tps.median, 2)} ms`).join(', ')}.`],
  };
  return [speeds, ratios];
}

/** `key: value` pairs, nested objects flattened with dotted keys: an engine's description on one table line. */
function flatten(value: unknown, prefix = ''): string[] {
  if (value === null || value === undefined || value === '') {
    return [];
  }
  if (typeof value === 'object' && !Array.isArray(value)) {
    return Object.entries(value as Record<string, unknown>).flatMap(([key, inner]) => flatten(inner, prefix === '' ? key : `${prefix}.${key}`));
  }
  const text = Array.isArray(value) ? value.join(' ') : String(value);
  return [`${prefix}: ${text}`];
}

export function machineMarkdown(document: CandleBenchDocument): string {
  const {machine, model, gpu} = document;
  const describe = (description: Record<string, unknown>): string => flatten(description).join('; ').replaceAll('|', '\\|');
  return [
    '| | |',
    '|:---|:---|',
    `| date | ${document.date} |`,
    `| device | ${document.options.device}${gpu === null ? '' : ` = ${gpu.name} (driver ${gpu.driver}, ${gpu.memory_mib ?? '?'} MiB)`} |`,
    `| CPU | ${machine.cpu_model} × ${machine.cores} cores (available parallelism ${machine.available_parallelism}) |`,
    `| memory | ${machine.memory_gib} GiB |`,
    `| OS | ${machine.platform} ${machine.kernel} ${machine.arch} (host ${machine.hostname}) |`,
    `| Node.js | ${machine.node} |`,
    `| rbee | ${machine.rbee}${machine.git_commit === null ? ' (no commit)' : ` @ ${machine.git_commit.slice(0, 12)}`} |`,
    `| model | ${model.file} (${model.size_bytes} bytes, ${model.size_mib} MiB) at \`${model.path}\` |`,
    ...document.engines.map(engine => `| ${engine.name} | ${describe(engine.description)} |`),
    `| command | \`${document.command}\` |`,
    `| wall time | ${document.wall_seconds} s |`,
    `| load average (1/5/15 min) | before ${document.load_average.before.join(' / ')}, after ${document.load_average.after.join(' / ')} |`,
  ].join('\n');
}

export function candleMarkdown(document: CandleBenchDocument): string {
  const where = document.options.device === 'cpu' ? 'CPU' : `${document.options.device}${document.gpu === null ? '' : ` (${document.gpu.name})`}`;
  return [
    `# candle engine vs llama.cpp, ${document.date.slice(0, 10)}, ${where}`,
    '',
    machineMarkdown(document),
    '',
    'Medians and p90s of repeated runs in rotating order; ratios are of medians. See `bench/README.md`, "(f) candle engine vs llama.cpp".',
    '',
    ...candleTables(document).flatMap(table => [renderMarkdown(table), '']),
  ].join('\n');
}

/** The first positions at which two greedy generations agree, and where they first part. */
export function compareTokens(peer: string, candle: readonly number[], other: readonly number[]): TokenAgreement {
  const compared = Math.min(candle.length, other.length);
  let agreed = 0;
  let firstDivergence: number | null = null;
  for (let position = 0; position < compared; position++) {
    if (candle[position] === other[position]) {
      agreed++;
    } else {
      firstDivergence ??= position;
    }
  }
  return {peer, agreed, compared, first_divergence: firstDivergence};
}
