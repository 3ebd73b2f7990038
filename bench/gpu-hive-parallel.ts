/**
 * Issue 11's "Show" on the GPU: `rbee worker spawn --type candle --device cuda:0 --parallel 8`
 * through a real hive, 8 OpenAI streams (POST /v1/completions, stream: true, greedy) at once,
 * each stream's text equal to the same request served alone. Also times both phases, so the
 * batch's speed-up over one-at-a-time is on record.
 *
 *   node bench/gpu-hive-parallel.ts --model M.gguf [--device cuda:0] [--parallel 8] [--tokens 64]
 *       [--context 1024] [--out dir] [--name stem]
 *
 * On a GPU machine with no Node toolchain it runs bundled: `bash bench/gpu/batching-on-gpu.sh hivebench`.
 * The CUDA .node reaches the worker through NAPI_RS_NATIVE_LIBRARY_PATH (the hive passes its
 * environment on; only RBEE_* settings are left out of the bench's hive).
 */
import fs from 'node:fs';
import path from 'node:path';
import {fileURLToPath, pathToFileURL} from 'node:url';

import {parseArgsOrUsage} from './lib/args.js';
import {cleanupAll, installExitHandlers} from './lib/cleanup.js';
import {gpuCardSlug, gpuOfDevice, nvidiaGpus} from './lib/gpu-info.js';
import {startHiveProcess, type HiveProcess} from './lib/hive-process.js';
import {waitUntilReady} from './lib/hive-workers.js';
import {localDate, machineInfo} from './lib/machine.js';

/** Eight different openings for a base model (no chat template): short and long, prose and code. */
const PROMPTS = [
  'The history of beekeeping begins',
  'A recipe for bread needs flour, water,',
  'def fibonacci(n):\n    """Return the n-th Fibonacci number."""\n',
  'The three laws of thermodynamics state that',
  'Once upon a time, in a village at the edge of a great forest, there lived an old clockmaker who',
  'The capital of France is Paris. The capital of Germany is',
  'In 1969, the first humans to walk on the Moon were',
  'Water boils at 100 degrees Celsius at sea level because',
];

type Stream = {prompt: number; text: string; tokens: number; finish: string; ttftMs: number; totalMs: number};

async function complete(hive: HiveProcess, model: string, prompt: number, maxTokens: number): Promise<Stream> {
  const started = performance.now();
  let first: number | null = null;
  let text = '';
  let finish = '?';
  let tokens = 0;
  for await (const chunk of hive.client.completionStream(
    {model, prompt: PROMPTS[prompt]!, max_tokens: maxTokens, temperature: 0},
    {signal: AbortSignal.timeout(300_000)},
  )) {
    const choice = chunk.choices[0];
    if (choice === undefined) {
      continue;
    }
    if (choice.text !== '') {
      first ??= performance.now();
      text += choice.text;
      tokens++;
    }
    finish = choice.finish_reason ?? finish;
  }
  if (first === null) {
    throw new Error(`prompt ${prompt}: the stream ended without text`);
  }
  return {prompt, text, tokens, finish, ttftMs: first - started, totalMs: performance.now() - started};
}

function usage(message?: string): never {
  process.stderr.write(
    `${message === undefined ? '' : `${message}\n`}usage: node bench/gpu-hive-parallel.ts --model M.gguf [--device cuda:0] [--parallel 8] [--tokens 64] [--context 1024] [--out dir] [--name stem]\n`,
  );
  process.exit(message === undefined ? 0 : 2);
}

async function main(): Promise<void> {
  const values = parseArgsOrUsage(
    process.argv.slice(2),
    {
      model: {type: 'string'},
      device: {type: 'string', default: 'cuda:0'},
      parallel: {type: 'string', default: '8'},
      tokens: {type: 'string', default: '64'},
      context: {type: 'string', default: '1024'},
      out: {type: 'string'},
      name: {type: 'string'},
      help: {type: 'boolean', short: 'h', default: false},
    },
    usage,
  );
  if (values.help) {
    usage();
  }
  if (values.model === undefined || !fs.existsSync(values.model)) {
    usage(`--model must name a GGUF file (${values.model ?? 'none given'})`);
  }
  const parallel = Number(values.parallel);
  const maxTokens = Number(values.tokens);
  const contextSize = Number(values.context);
  if (![parallel, maxTokens, contextSize].every(n => Number.isInteger(n) && n > 0) || parallel > PROMPTS.length) {
    usage(`--parallel (1..${PROMPTS.length}), --tokens and --context must be positive integers`);
  }
  const log = (message: string) => process.stderr.write(`[hive-parallel ${new Date().toISOString().slice(11, 19)}] ${message}\n`);
  installExitHandlers(20 * 60_000);
  const started = new Date();
  const machine = machineInfo();
  const gpu = values.device === 'cpu' ? null : gpuOfDevice(values.device, nvidiaGpus());

  const hive = await startHiveProcess({startTimeoutMs: 60_000});
  const created = await hive.client.spawnWorker(
    {type: 'candle', model: path.resolve(values.model), device: values.device, parallel, context_size: contextSize, restart: 'never'},
    {timeoutMs: 60_000},
  );
  const worker = await waitUntilReady(hive, created.worker_id, {timeoutMs: 300_000, intervalMs: 50});
  const model = worker.model;
  log(`${gpu?.name ?? 'no GPU'}; worker ${worker.worker_id} (candle, ${values.device}, --parallel ${parallel}) ready; model ${model}`);

  const prompts = [...Array(parallel).keys()];
  const aloneStarted = performance.now();
  const alone: Stream[] = [];
  for (const prompt of prompts) {
    alone.push(await complete(hive, model, prompt, maxTokens));
  }
  const aloneMs = performance.now() - aloneStarted;
  const togetherStarted = performance.now();
  const together = await Promise.all(prompts.map(prompt => complete(hive, model, prompt, maxTokens)));
  const togetherMs = performance.now() - togetherStarted;
  const equal = prompts.filter(i => alone[i]!.text === together[i]!.text).length;
  const after = await hive.client.getWorker(worker.worker_id);
  await hive.stop();

  const document = {
    schema: 'rbee-bench-gpu-hive-parallel/1',
    date: started.toISOString(),
    command: ['node', 'bench/gpu-hive-parallel.ts', ...process.argv.slice(2)].join(' '),
    machine,
    gpu,
    worker: {id: worker.worker_id, type: worker.type, device: worker.device, parallel, context_size: contextSize, model},
    max_tokens: maxTokens,
    equal_to_alone: `${equal}/${parallel}`,
    alone_ms: Math.round(aloneMs),
    together_ms: Math.round(togetherMs),
    speedup: Math.round((aloneMs / togetherMs) * 100) / 100,
    worker_after: after,
    streams: prompts.map(i => ({alone: alone[i], together: together[i], equal: alone[i]!.text === together[i]!.text})),
  };
  const out = values.out ?? fileURLToPath(new URL('./results/', import.meta.url));
  const card = gpu === null ? 'cpu' : `gpu-${gpuCardSlug(gpu)}`;
  const stem = values.name ?? `${localDate(started)}-${card}-hive-parallel`;
  fs.mkdirSync(out, {recursive: true});
  fs.writeFileSync(path.join(out, `${stem}.json`), `${JSON.stringify(document, null, 2)}\n`);
  log(
    `${equal}/${parallel} streams equal to alone; alone one after another ${Math.round(aloneMs)} ms, together ${Math.round(togetherMs)} ms (${document.speedup}x); ${path.join(out, `${stem}.json`)}`,
  );
  if (equal !== parallel) {
    for (const i of prompts.filter(j => alone[j]!.text !== together[j]!.text)) {
      log(`prompt ${i} differs:\n  alone:    ${JSON.stringify(alone[i]!.text)}\n  together: ${JSON.stringify(together[i]!.text)}`);
    }
    process.exitCode = 1;
  }
}

const invokedDirectly = process.argv[1] !== undefined && import.meta.url === pathToFileURL(path.resolve(process.argv[1])).href;
if (invokedDirectly) {
  try {
    await main();
  } catch (error) {
    process.stderr.write(`[hive-parallel] failed: ${(error as Error).stack ?? String(error)}\n`);
    process.exitCode = 1;
  } finally {
    await cleanupAll();
  }
}
