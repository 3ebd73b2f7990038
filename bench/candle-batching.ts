/**
 * (g) Continuous batching on the CPU: aggregate decode tokens/s of rbee's candle engine (in this
 * process, `parallel: 4`, the ggml path) at 1, 2 and 4 concurrent greedy streams, against
 * llama.cpp's llama-server `-np 4` on the same GGUF, threads and context per slot, in one run.
 * Rounds alternate which engine goes first; medians per stream count and the ratio candle /
 * llama-server of the medians. Each round also checks that candle's batched streams give, token
 * for token, the text each gives alone (the batched step must not change any stream).
 *
 *   npm run build && node --import tsx bench/candle-batching.ts [--runs 5] [--tokens 64] [--label vm]
 *
 * Writes bench/results/<yyyy-mm-dd>-cpu-<label or host>-candle-batching.{json,md}, with the CPU
 * model and its SIMD level (AVX-512 or AVX2 only: the batched kernels run on both).
 */
import {execFileSync} from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import {fileURLToPath} from 'node:url';
import {findLlamaCpp} from '../src/engines/llama-cpp-build.js';
import {resolveModel} from '../src/models/resolve-model.js';
import {loadNativeModel, nativeGgmlSimdLevel, type NativeModel} from '../src/native/index.js';
import {parseArgsOrUsage} from './lib/args.js';
import {cleanupAll, installExitHandlers, onCleanup} from './lib/cleanup.js';
import {freeLoopbackPort, llamaServerVersion, startLlamaServer, type LlamaServerProcess} from './lib/llama-server-process.js';
import {fileSlug, hostSlug, localDate, machineInfo, modelInfo} from './lib/machine.js';
import {round, summarize} from './lib/stats.js';
import {fmt, fmtRatio, renderMarkdown, renderText, type Table} from './lib/table.js';

const resultsDir = fileURLToPath(new URL('./results/', import.meta.url));
const log = (message: string) => process.stderr.write(`[bench:batching] ${message}\n`);

/** Greedy continuations of these run long (counting, the alphabet): no stream ends early by itself. */
const prompts = ['1, 2, 3, 4, 5,', 'Count to one thousand: 1 2 3', 'A list of numbers: 10, 20, 30,', 'The alphabet: a b c d'];
const streamCounts = [1, 2, 4] as const;

type Options = {runs: number; tokens: number; threads: number; contextSize: number; label: string | null; model: string | null; server: string | null};

function usage(message?: string): never {
  if (message !== undefined) {
    process.stderr.write(`bench: ${message}\n`);
  }
  process.stderr.write(
    'usage: node --import tsx bench/candle-batching.ts [--runs N] [--tokens N] [--threads N] [--context-size N] [--label NAME] [--model GGUF] [--server llama-server]\n' +
      '  --runs N          rounds per stream count and engine (default 5)\n' +
      '  --tokens N        tokens generated per stream (default 64)\n' +
      '  --threads N       CPU threads for both engines (default: all cores)\n' +
      '  --context-size N  KV positions per stream (default 512; llama-server gets N x 4)\n',
  );
  process.exit(message === undefined ? 0 : 2);
}

function integer(value: string | undefined, name: string, fallback: number, min: number, max: number): number {
  if (value === undefined) {
    return fallback;
  }
  const parsed = Number(value);
  if (!Number.isInteger(parsed) || parsed < min || parsed > max) {
    usage(`--${name} must be an integer from ${min} to ${max}, not "${value}"`);
  }
  return parsed;
}

function parseOptions(argv: string[]): Options {
  const values = parseArgsOrUsage(
    argv,
    {
      runs: {type: 'string'},
      tokens: {type: 'string'},
      threads: {type: 'string'},
      'context-size': {type: 'string'},
      label: {type: 'string'},
      model: {type: 'string'},
      server: {type: 'string'},
      help: {type: 'boolean', short: 'h', default: false},
    },
    usage,
  );
  if (values.help === true) {
    usage();
  }
  return {
    runs: integer(values.runs, 'runs', 5, 1, 50),
    tokens: integer(values.tokens, 'tokens', 64, 8, 1_024),
    threads: integer(values.threads, 'threads', os.availableParallelism(), 1, 1_024),
    contextSize: integer(values['context-size'], 'context-size', 512, 128, 32_768),
    label: values.label ?? null,
    model: values.model ?? null,
    server: values.server ?? null,
  };
}

/** lscpu's model name and whether the CPU has AVX-512 (else AVX2 at best). */
function cpuDescription(): {model: string; simd: string} {
  let text = '';
  try {
    text = execFileSync('lscpu', [], {encoding: 'utf8', timeout: 10_000});
  } catch {
    // no lscpu: os.cpus() below
  }
  const model = /^Model name:\s*(.+)$/m.exec(text)?.[1]?.trim() ?? os.cpus()[0]?.model.trim() ?? 'unknown';
  const flags = /^Flags:\s*(.+)$/m.exec(text)?.[1]?.split(/\s+/) ?? [];
  const simd = flags.includes('avx512f') ? 'AVX-512' : flags.includes('avx2') ? 'AVX2 (no AVX-512)' : 'no AVX2';
  return {model, simd};
}

type Round = {engine: 'candle' | 'llama-server'; streams: number; tokens: number; ms: number; tokensPerSecond: number};

async function candleRound(model: NativeModel, streams: number, tokens: number): Promise<{round: Round; texts: string[]}> {
  const began = performance.now();
  const results = await Promise.all(prompts.slice(0, streams).map(prompt => model.generate({prompt, maxTokens: tokens})));
  const ms = performance.now() - began;
  const generated = results.reduce((sum, result) => sum + result.tokensGenerated, 0);
  return {round: {engine: 'candle', streams, tokens: generated, ms, tokensPerSecond: (generated * 1000) / ms}, texts: results.map(result => result.text)};
}

async function llamaServerRound(server: LlamaServerProcess, streams: number, tokens: number): Promise<Round> {
  const began = performance.now();
  const answers = await Promise.all(
    prompts.slice(0, streams).map(async prompt => {
      const response = await fetch(`${server.url}/completion`, {
        method: 'POST',
        headers: {'content-type': 'application/json'},
        body: JSON.stringify({prompt, n_predict: tokens, temperature: 0, cache_prompt: false}),
        signal: AbortSignal.timeout(600_000),
      });
      if (!response.ok) {
        throw new Error(`llama-server answered ${response.status}: ${await response.text()}`);
      }
      return (await response.json()) as {tokens_predicted: number};
    }),
  );
  const ms = performance.now() - began;
  const generated = answers.reduce((sum, answer) => sum + answer.tokens_predicted, 0);
  return {engine: 'llama-server', streams, tokens: generated, ms, tokensPerSecond: (generated * 1000) / ms};
}

async function main(): Promise<void> {
  const options = parseOptions(process.argv.slice(2));
  installExitHandlers(3_600_000);
  const modelPath = options.model ?? (await resolveModel('default', {modelsDir: path.join(os.homedir(), '.cache', 'rbee', 'models')})).path;
  const serverPath = options.server ?? process.env.RBEE_LLAMA_SERVER ?? findLlamaCpp()?.programs['llama-server'];
  if (serverPath === undefined) {
    throw new Error('no llama-server: pass --server, set RBEE_LLAMA_SERVER, or run `rbee engines install llama.cpp`');
  }
  const cpu = cpuDescription();
  const loadBefore = os.loadavg();
  log(`${cpu.model} (${cpu.simd}), ${options.threads} threads, ${modelPath}`);

  const candle = await loadNativeModel({path: modelPath, threads: options.threads, contextSize: options.contextSize, parallel: 4});
  onCleanup('candle model', async () => candle.close());
  const port = await freeLoopbackPort();
  const serverArgs = [
    '--model',
    modelPath,
    '--host',
    '127.0.0.1',
    '--port',
    String(port),
    '--ctx-size',
    String(options.contextSize * 4),
    '--parallel',
    '4',
    '--threads',
    String(options.threads),
    '--n-gpu-layers',
    '0',
    '--no-webui',
  ];
  const server = await startLlamaServer(serverPath, serverArgs, {startTimeoutMs: 120_000});
  onCleanup('llama-server', async () => void (await server.stop()));

  // Each stream alone first: what its text must stay in every batch.
  const alone: string[] = [];
  for (const prompt of prompts) {
    alone.push((await candle.generate({prompt, maxTokens: options.tokens})).text);
  }
  // One warm-up each, outside the figures.
  await candleRound(candle, 4, 8);
  await llamaServerRound(server, 4, 8);

  const rounds: Round[] = [];
  let batchedSame = 0;
  let batchedTotal = 0;
  for (const streams of streamCounts) {
    for (let run = 0; run < options.runs; run++) {
      const order = run % 2 === 0 ? (['candle', 'llama-server'] as const) : (['llama-server', 'candle'] as const);
      for (const engine of order) {
        if (engine === 'candle') {
          const {round: measured, texts} = await candleRound(candle, streams, options.tokens);
          rounds.push(measured);
          texts.forEach((text, index) => {
            batchedTotal++;
            batchedSame += text === alone[index] ? 1 : 0;
          });
        } else {
          rounds.push(await llamaServerRound(server, streams, options.tokens));
        }
        const last = rounds.at(-1)!;
        log(`${engine} ${streams} stream(s), run ${run + 1}: ${last.tokens} tokens in ${Math.round(last.ms)} ms = ${last.tokensPerSecond.toFixed(1)} tok/s`);
      }
    }
  }

  const rows = streamCounts.map(streams => {
    const of = (engine: Round['engine']) => rounds.filter(entry => entry.engine === engine && entry.streams === streams).map(entry => entry.tokensPerSecond);
    const candleTps = summarize(of('candle'));
    const serverTps = summarize(of('llama-server'));
    return {streams, candle: candleTps, llamaServer: serverTps, ratio: candleTps.median / serverTps.median};
  });
  const candleOne = rows[0]!.candle.median;
  const serverOne = rows[0]!.llamaServer.median;
  const machine = machineInfo();
  const table: Table = {
    title: `Aggregate decode tok/s, ${options.tokens} greedy tokens per stream (medians of ${options.runs}; p90 of the per-round rates in brackets)`,
    header: ['streams', 'candle tok/s', 'llama-server -np 4 tok/s', 'candle / llama-server', 'candle vs its 1 stream', 'llama-server vs its 1 stream'],
    rows: rows.map(row => [
      String(row.streams),
      `${fmt(row.candle.median)} (${fmt(row.candle.p90)})`,
      `${fmt(row.llamaServer.median)} (${fmt(row.llamaServer.p90)})`,
      fmtRatio(row.ratio),
      fmtRatio(row.candle.median / candleOne),
      fmtRatio(row.llamaServer.median / serverOne),
    ]),
    notes: [
      `candle: rbee's engine in process, ggml path, parallel 4 (a KV cache of ${options.contextSize} per slot), ${options.threads} threads`,
      `llama-server: ${serverArgs.filter(arg => arg !== modelPath).join(' ')} (same GGUF), ${llamaServerVersion(serverPath).split('\n')[0]}`,
      `candle's batched streams equal to the same stream alone: ${batchedSame}/${batchedTotal}`,
      'each round: the streams sent at once; the rate is all their generated tokens over the wall time from sending to the last answer (prompt included)',
    ],
  };
  const document = {
    date: new Date().toISOString(),
    cpu,
    machine,
    model: modelInfo('default', modelPath),
    options,
    server: {path: serverPath, args: serverArgs, version: llamaServerVersion(serverPath)},
    simd_level_followed: await nativeGgmlSimdLevel(),
    // Other processes' load: on a shared machine it weighs on llama-server's spinning thread pool more than on candle's.
    load_average: {before: loadBefore.map(value => round(value)), after: os.loadavg().map(value => round(value))},
    batched_equal_alone: {same: batchedSame, total: batchedTotal},
    summary: rows.map(row => ({
      streams: row.streams,
      candle_tok_s_median: round(row.candle.median),
      llama_server_tok_s_median: round(row.llamaServer.median),
      ratio: round(row.ratio, 3),
    })),
    rounds: rounds.map(entry => ({...entry, ms: round(entry.ms), tokensPerSecond: round(entry.tokensPerSecond)})),
  };
  const stem = `${localDate(new Date())}-cpu-${options.label === null ? hostSlug(machine) : fileSlug(options.label)}-candle-batching`;
  fs.mkdirSync(resultsDir, {recursive: true});
  fs.writeFileSync(`${resultsDir}${stem}.json`, `${JSON.stringify(document, null, 2)}\n`);
  const markdown = [
    `# Continuous batching on the CPU: candle vs llama-server -np 4 (${localDate(new Date())})`,
    '',
    `- CPU: ${cpu.model}, ${cpu.simd}; ${machine.cores} cores (lscpu), ${machine.memory_gib} GiB; the engine's exact path follows llama.cpp's ${document.simd_level_followed} build`,
    `- Model: ${document.model.file} (${document.model.size_mib} MiB)`,
    `- Load average (1/5/15 min) before ${document.load_average.before.join(' / ')}, after ${document.load_average.after.join(' / ')} on ${machine.cores} cores: other processes ran beside the bench`,
    `- rbee ${machine.rbee}, commit ${machine.git_commit ?? 'none'}; node ${machine.node}`,
    `- Reproduce: \`npm run build && node --import tsx bench/candle-batching.ts --runs ${options.runs} --tokens ${options.tokens} --threads ${options.threads}${options.label === null ? '' : ` --label ${options.label}`}\``,
    '',
    renderMarkdown(table),
    '',
  ].join('\n');
  fs.writeFileSync(`${resultsDir}${stem}.md`, markdown);
  process.stdout.write(`${renderText(table)}\n`);
  log(`wrote bench/results/${stem}.{json,md}`);
}

try {
  await main();
} finally {
  await cleanupAll();
}
