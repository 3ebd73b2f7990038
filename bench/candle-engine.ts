/**
 * (f) rbee's candle engine against llama.cpp on the same GGUF, the same threads and context, in one
 * run: prompt tokens/s and decode tokens/s, medians and p90s over rounds whose order rotates
 * (A B, B A, …), and the ratio candle / llama.cpp of the medians (the goal: ≥ 1.0). The peer is
 * node-llama-cpp in this process (CPU), and/or llama.cpp's own llama-bench binary (CPU or GPU; the
 * one way to measure a GPU machine that has no node_modules).
 *
 *   node --import tsx bench/candle-engine.ts [--peer node-llama-cpp] [--peer llama-bench[:<path>]] [--runs 5]
 *   node bench/.work/candle-bench.mjs --device cuda:0 --peer llama-bench:<path> --model <gguf>   # the bundle (npm run bench:candle:bundle)
 *
 * Writes bench/results/<yyyy-mm-dd>-<cpu|gpu>-<host or label>-candle.{json,md}.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import {resolveModel} from '../src/models/resolve-model.js';
import {startCandleSide} from './lib/candle-side.js';
import {
  candleMarkdown,
  candleTables,
  compareTokens,
  disturbedCores,
  isDisturbed,
  summarizeSamples,
  type CandleBenchDocument,
  type CandleSample,
  type TokenAgreement,
} from './lib/candle-engine-report.js';
import {parseArgsOrUsage} from './lib/args.js';
import {cleanupAll, installExitHandlers, onCleanup} from './lib/cleanup.js';
import {gpuOfDevice, memoryRooflineTBps, nvidiaGpus} from './lib/gpu-info.js';
import {repoRoot} from './lib/hive-process.js';
import {findInstalledLlamaBench, startLlamaBenchSide} from './lib/llama-bench-side.js';
import {fileSlug, hostSlug, localDate, machineInfo, modelInfo, type ModelInfo} from './lib/machine.js';
import {startNodeLlamaCppSide} from './lib/node-llama-cpp-side.js';
import {foreignCpuWindow, waitForQuiet} from './lib/quiet-machine.js';
import type {SpeedEngine, SpeedMeasurement} from './lib/speed-engine.js';
import {round} from './lib/stats.js';
import {nativeForwardPaths, type NativeForwardPath} from '../src/native/index.js';
import {renderText} from './lib/table.js';

type PeerSpec = {kind: 'node-llama-cpp'} | {kind: 'llama-bench'; binary: string};

type Options = {
  model: string | null;
  device: string;
  forward: NativeForwardPath | null;
  threads: number;
  promptTokens: number;
  decodeTokens: number;
  contextSize: number;
  runs: number;
  peers: PeerSpec[];
  out: string;
  label: string | null;
  rooflineTBps: number | null;
  quietWaitMs: number;
  retries: number;
  render: string | null;
};

const log = (message: string) => process.stderr.write(`[bench:candle] ${message}\n`);

function usage(message?: string): never {
  if (message !== undefined) {
    process.stderr.write(`bench:candle: ${message}\n`);
  }
  process.stderr.write(
    [
      'usage: node --import tsx bench/candle-engine.ts [options]     (or node bench/.work/candle-bench.mjs [options])',
      '  --model <gguf>            default: the default Gemma 3 270M Q4_K_M from ~/.cache/rbee/models',
      '  --device cpu|cuda:N       where the candle engine runs (default cpu); llama-bench gets -ngl 99 off the CPU',
      "  --forward ggml|tensor|graph the candle engine's forward path (default: the engine's own, RBEE_CANDLE_FORWARD or the device's)",
      '  --threads N               CPU threads for every engine (default 2)',
      '  --prompt-tokens N         prompt length (default 128)',
      '  --decode-tokens N         tokens generated per sample (default 128)',
      '  --context N               context size of the in-process engines (default max(2048, prompt + decode))',
      '  --runs N                  rounds (default 5); each round measures every engine once, the order rotating',
      '  --peer node-llama-cpp     llama.cpp through node-llama-cpp, in process, CPU only (the default on the CPU)',
      "  --peer llama-bench[:path] llama.cpp's llama-bench binary (default path: ~/.cache/rbee/llama.cpp/*/bin/llama-bench);",
      '                            repeat --peer to measure several peers in the same rounds',
      '  --out <dir>               results folder (default bench/results)',
      '  --label <text>            replaces the host name in the results file name',
      "  --roofline-tbps X         the GPU's peak memory bandwidth, TB/s (default: from nvidia-smi's card name)",
      '  --quiet-wait-ms N         longest wait before a sample for other processes to go under a quarter core (default 20000)',
      '  --retries N               times a sample disturbed by other processes (> a quarter core) is run again (default 2)',
      '  --render <json>           measure nothing: rewrite the .md beside a results .json and print its tables',
      '',
    ].join('\n'),
  );
  process.exit(message === undefined ? 0 : 2);
}

function integerOption(name: string, value: string | undefined, fallback: number, min: number, max: number): number {
  if (value === undefined) {
    return fallback;
  }
  const parsed = Number(value);
  if (!Number.isInteger(parsed) || parsed < min || parsed > max) {
    usage(`--${name} must be an integer from ${min} to ${max}, not "${value}"`);
  }
  return parsed;
}

function parsePeer(text: string, device: string): PeerSpec {
  if (text === 'node-llama-cpp') {
    if (device !== 'cpu') {
      usage('the node-llama-cpp peer runs on the CPU only: use --peer llama-bench:<path> with a GPU device');
    }
    return {kind: 'node-llama-cpp'};
  }
  if (text === 'llama-bench' || text.startsWith('llama-bench:')) {
    const binary = text === 'llama-bench' ? findInstalledLlamaBench() : text.slice('llama-bench:'.length);
    if (binary === null || binary === '') {
      usage('no llama-bench in ~/.cache/rbee/llama.cpp: give --peer llama-bench:<path>');
    }
    return {kind: 'llama-bench', binary: path.resolve(binary)};
  }
  return usage(`--peer must be node-llama-cpp, llama-bench or llama-bench:<path>, not "${text}"`);
}

function parseOptions(argv: string[]): Options {
  const values = parseArgsOrUsage(
    argv,
    {
      model: {type: 'string'},
      device: {type: 'string', default: 'cpu'},
      forward: {type: 'string'},
      threads: {type: 'string'},
      'prompt-tokens': {type: 'string'},
      'decode-tokens': {type: 'string'},
      context: {type: 'string'},
      runs: {type: 'string'},
      peer: {type: 'string', multiple: true},
      out: {type: 'string'},
      label: {type: 'string'},
      'roofline-tbps': {type: 'string'},
      'quiet-wait-ms': {type: 'string'},
      retries: {type: 'string'},
      render: {type: 'string'},
      help: {type: 'boolean', short: 'h', default: false},
    },
    usage,
  );
  const device = values.device ?? 'cpu';
  if (!/^(cpu|cuda:\d+|metal)$/.test(device)) {
    usage(`--device must be cpu, cuda:N or metal, not "${device}"`);
  }
  const forward = values.forward ?? null;
  if (forward !== null && !(nativeForwardPaths as readonly string[]).includes(forward)) {
    usage(`--forward must be one of ${nativeForwardPaths.join(', ')}, not "${forward}"`);
  }
  const promptTokens = integerOption('prompt-tokens', values['prompt-tokens'], 128, 1, 32_768);
  const decodeTokens = integerOption('decode-tokens', values['decode-tokens'], 128, 2, 32_768);
  const contextSize = integerOption('context', values.context, Math.max(2048, promptTokens + decodeTokens), promptTokens + decodeTokens, 262_144);
  const peerTexts = values.peer ?? [device === 'cpu' ? 'node-llama-cpp' : 'llama-bench'];
  const peers = peerTexts.map(text => parsePeer(text, device));
  let rooflineTBps: number | null = null;
  if (values['roofline-tbps'] !== undefined) {
    rooflineTBps = Number(values['roofline-tbps']);
    if (!Number.isFinite(rooflineTBps) || rooflineTBps <= 0) {
      usage(`--roofline-tbps must be a positive number, not "${values['roofline-tbps']}"`);
    }
  }
  return {
    model: values.model ?? null,
    device,
    forward: forward as NativeForwardPath | null,
    threads: integerOption('threads', values.threads, 2, 1, 1024),
    promptTokens,
    decodeTokens,
    contextSize,
    runs: integerOption('runs', values.runs, 5, 1, 50),
    peers,
    out: values.out === undefined ? path.join(repoRoot, 'bench', 'results') : path.resolve(values.out),
    label: values.label ?? null,
    rooflineTBps,
    quietWaitMs: integerOption('quiet-wait-ms', values['quiet-wait-ms'], 20_000, 0, 600_000),
    retries: integerOption('retries', values.retries, 2, 0, 10),
    render: values.render ?? null,
  };
}

/** --model's file, or the default model as the other benchmarks resolve it (assembled in ~/.cache/rbee/models on first use). */
async function benchModel(file: string | null): Promise<ModelInfo> {
  if (file !== null) {
    const resolved = path.resolve(file);
    if (!fs.existsSync(resolved)) {
      throw new Error(`--model: no such file: ${resolved}`);
    }
    return modelInfo(path.basename(resolved).replace(/\.gguf$/i, ''), resolved);
  }
  const modelsDir = path.join(os.homedir(), '.cache', 'rbee', 'models');
  log(`resolving the default model in ${modelsDir}`);
  const resolved = await resolveModel('default', {modelsDir});
  return modelInfo(resolved.name, resolved.path);
}

function describeMeasurement(engine: string, measurement: SpeedMeasurement): string {
  return (
    `${engine}: prompt ${measurement.prompt_tps.toFixed(1)} tok/s (${measurement.prompt_tokens} in ${measurement.prompt_ms.toFixed(1)} ms), ` +
    `decode ${measurement.decode_tps.toFixed(2)} tok/s (${measurement.generated_tokens} generated, ${measurement.finish})`
  );
}

/** Writes the .md beside the .json and prints the tables: after a run, or again from a recorded .json (--render). */
function report(document: CandleBenchDocument, jsonFile: string): void {
  const markdownFile = jsonFile.replace(/\.json$/, '.md');
  fs.writeFileSync(markdownFile, candleMarkdown(document));
  const {machine, model} = document;
  process.stdout.write(
    `\nrbee bench:candle: ${machine.cpu_model} × ${machine.cores}${document.gpu === null ? '' : `, ${document.gpu.name}`}, Node ${machine.node}, ${model.file} (${model.size_mib} MiB), ${document.wall_seconds} s\n\n`,
  );
  process.stdout.write(`${candleTables(document).map(renderText).join('\n\n')}\n\n`);
  process.stdout.write(`wrote ${path.relative(process.cwd(), jsonFile)} and ${path.relative(process.cwd(), markdownFile)}\n`);
}

async function startPeer(spec: PeerSpec, options: Options, model: ModelInfo, prompt: readonly number[]): Promise<SpeedEngine & {lastTokens?: number[]}> {
  if (spec.kind === 'node-llama-cpp') {
    log(`loading ${model.file} in node-llama-cpp (CPU, threads ${options.threads}, context ${options.contextSize})`);
    return startNodeLlamaCppSide({
      modelPath: model.path,
      threads: options.threads,
      contextSize: options.contextSize,
      prompt,
      decodeTokens: options.decodeTokens,
    });
  }
  return startLlamaBenchSide({
    binary: spec.binary,
    modelPath: model.path,
    threads: options.threads,
    gpu: options.device !== 'cpu',
    promptTokens: options.promptTokens,
    decodeTokens: options.decodeTokens,
  });
}

/** One timed generation after a wait for a quiet machine, with the cores other processes used meanwhile. */
async function measureSample(engine: SpeedEngine, where: {round: number; order: number; attempt: number; quietWaitMs: number}): Promise<CandleSample> {
  const quiet = await waitForQuiet({maxCores: disturbedCores, maxWaitMs: where.quietWaitMs});
  const foreign = foreignCpuWindow();
  const began = performance.now();
  const measurement = await engine.measure();
  const wallMs = performance.now() - began;
  const foreignCores = foreign();
  return {
    ...measurement,
    round: where.round,
    engine: engine.name,
    order: where.order,
    wall_ms: round(wallMs, 1),
    foreign_cores: Number.isFinite(foreignCores) ? round(foreignCores, 3) : null,
    quiet_wait_ms: quiet.waited_ms,
    attempt: where.attempt,
    discarded: false,
  };
}

async function main(): Promise<void> {
  const argv = process.argv.slice(2);
  const options = parseOptions(argv);
  if (options.render !== null) {
    report(JSON.parse(fs.readFileSync(options.render, 'utf8')) as CandleBenchDocument, path.resolve(options.render));
    return;
  }
  const engineCount = 1 + options.peers.length;
  // Bounded: whatever happens, the run ends and cleans up (llama-bench included) by this deadline.
  installExitHandlers(Math.max(15, 5 + options.runs * engineCount * (1 + options.retries)) * 60_000);

  const started = new Date();
  const began = performance.now();
  const loadBefore = os.loadavg().map(value => round(value, 2));
  const model = await benchModel(options.model);
  const machine = machineInfo();
  const gpu = options.device.startsWith('cuda:') ? gpuOfDevice(options.device, nvidiaGpus()) : null;
  const rooflineTBps = options.rooflineTBps ?? (gpu === null ? null : memoryRooflineTBps(gpu.name));
  if (options.device.startsWith('cuda:') && rooflineTBps === null) {
    log(`no known peak memory bandwidth for ${gpu?.name ?? 'this GPU (nvidia-smi gave none)'}: give --roofline-tbps to get the fraction of the roofline`);
  }
  log(
    `${machine.cpu_model} × ${machine.cores}${gpu === null ? '' : `, ${gpu.name}`}; model ${model.file} (${model.size_mib} MiB); device ${options.device}, threads ${options.threads}`,
  );

  log(`loading ${model.file} in the candle engine (${options.device}, threads ${options.threads}, context ${options.contextSize})`);
  const candle = await startCandleSide({
    modelPath: model.path,
    device: options.device,
    forward: options.forward,
    threads: options.threads,
    contextSize: options.contextSize,
    promptTokens: options.promptTokens,
    decodeTokens: options.decodeTokens,
  });
  // Closed in order at the end; these cleanups only run if the run ends early.
  const forgetCleanups = [onCleanup('candle model', () => candle.close())];
  const engines: Array<SpeedEngine & {lastTokens?: number[]}> = [candle];
  for (const spec of options.peers) {
    const peer = await startPeer(spec, options, model, candle.prompt);
    forgetCleanups.push(onCleanup(peer.name, () => peer.close()));
    engines.push(peer);
  }
  const names = engines.map(engine => engine.name);
  if (new Set(names).size !== names.length) {
    throw new Error(`each peer may be given once: ${names.join(', ')}`);
  }

  // One unrecorded generation each: page cache, allocator, thread pools, CUDA kernels' first launch.
  const warmups = new Map<string, SpeedMeasurement>();
  const agreement: TokenAgreement[] = [];
  for (const engine of engines) {
    const measurement = await engine.measure();
    warmups.set(engine.name, measurement);
    log(`warm-up ${describeMeasurement(engine.name, measurement)}`);
    if (engine !== candle && engine.lastTokens !== undefined) {
      agreement.push(compareTokens(engine.name, candle.lastTokens, engine.lastTokens));
    }
  }

  const samples: CandleSample[] = [];
  for (let roundIndex = 0; roundIndex < options.runs; roundIndex++) {
    // Rotating the order spreads drift (CPU clocks, a neighbour's load, GPU boost) over every engine alike.
    const order = engines.map((_engine, index) => engines[(index + roundIndex) % engines.length]!);
    for (const [position, engine] of order.entries()) {
      for (let attempt = 0; ; attempt++) {
        const sample = await measureSample(engine, {round: roundIndex, order: position, attempt, quietWaitMs: options.quietWaitMs});
        // With the threads on every core, one busy neighbour can cut llama.cpp's decode tenfold (its threads
        // spin-wait for each other): such a try says more about the neighbour than the engine.
        sample.discarded = isDisturbed(sample) && attempt < options.retries;
        samples.push(sample);
        log(
          `round ${roundIndex + 1}/${options.runs} ${describeMeasurement(engine.name, sample)}; others ${sample.foreign_cores?.toFixed(2) ?? '?'} cores${sample.discarded ? ': disturbed, running it again' : ''}`,
        );
        if (!sample.discarded) {
          break;
        }
      }
    }
  }
  for (const forget of forgetCleanups) {
    forget();
  }
  for (const engine of [...engines].reverse()) {
    await engine.close();
  }

  const document: CandleBenchDocument = {
    schema: 'rbee-bench-candle/1',
    date: started.toISOString(),
    command: ['node', ...process.execArgv, path.relative(process.cwd(), process.argv[1] ?? 'bench/candle-engine.ts'), ...argv].join(' '),
    options: {
      device: options.device,
      forward: options.forward,
      threads: options.threads,
      prompt_tokens: options.promptTokens,
      decode_tokens: options.decodeTokens,
      context_size: options.contextSize,
      runs: options.runs,
      peers: options.peers.map(spec => (spec.kind === 'node-llama-cpp' ? spec.kind : `llama-bench:${spec.binary}`)),
      label: options.label,
      quiet_gate: {cores: disturbedCores, max_wait_ms: options.quietWaitMs, retries_of_disturbed_samples: options.retries},
    },
    wall_seconds: Math.round((performance.now() - began) / 1000),
    load_average: {before: loadBefore, after: os.loadavg().map(value => round(value, 2))},
    machine,
    gpu,
    roofline_tbps: rooflineTBps,
    model,
    engines: engines.map(engine => ({name: engine.name, description: engine.description, warmup: warmups.get(engine.name)!})),
    token_agreement: agreement,
    samples,
    summary: summarizeSamples(samples, names, model.size_bytes, rooflineTBps),
  };
  const where = options.device === 'cpu' ? 'cpu' : 'gpu';
  const who = options.label === null ? hostSlug(machine) : fileSlug(options.label) || hostSlug(machine);
  fs.mkdirSync(options.out, {recursive: true});
  const jsonFile = path.join(options.out, `${localDate(started)}-${where}-${who}-candle.json`);
  fs.writeFileSync(jsonFile, `${JSON.stringify(document, null, 2)}\n`);
  report(document, jsonFile);
}

try {
  await main();
} catch (error) {
  process.stderr.write(`[bench:candle] failed: ${(error as Error).stack ?? String(error)}\n`);
  process.exitCode = 1;
} finally {
  await cleanupAll();
}
