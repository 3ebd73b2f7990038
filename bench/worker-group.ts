/**
 * (g) Worker groups: what spreading one model over several devices costs, against one worker
 * holding it all, both through the same hive in the same run. The group is `rbee worker
 * spawn-group --type <type>`: llamacpp (llama-server on the coordinator over a ggml-rpc-server per
 * shard, layers split) or candle (tensor parallel, a rank per device); the peer is one worker of the
 * same type on the first device, so the difference is the sharding and nothing else.
 *
 *   spawn → ready   the hive's spawn answer to `healthy` (group) / `ready` (worker), model cached
 *   decode tok/s    streamed greedy generations through the hive (first token to done), median
 *   ttft ms         request to first token (prompt read + first step), median
 *   memory          per device: GPU memory used (nvidia-smi) above what it was before the spawn;
 *                   on the CPU, the resident memory of the member processes and their engines
 *   aggregate tok/s with --streams N (> 1): N streamed generations at once (both spawned with
 *                   --parallel N), tokens of all of them over the wall time, median over the runs
 *
 *   node --import tsx bench/worker-group.ts --model <gguf> --devices cuda:0,cuda:1 [--type llamacpp|candle] [--streams 1]
 *     [--runs 5] [--max-tokens 128] [--threads N] [--label name] [--out bench/results]
 * The engines are found as the adapter finds them (RBEE_LLAMA_SERVER / RBEE_GGML_RPC_SERVER, PATH, or
 * `rbee engines install llama.cpp`'s cache).
 */
import {execFileSync} from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import {parseArgsOrUsage} from './lib/args.js';
import {cleanupAll, installExitHandlers} from './lib/cleanup.js';
import {nvidiaGpus} from './lib/gpu-info.js';
import {startHiveProcess, type HiveProcess} from './lib/hive-process.js';
import {pollUntil, streamInfer} from './lib/http.js';
import {machineInfo} from './lib/machine.js';
import {median, ratio, round} from './lib/stats.js';
import {fmt, fmtRatio, renderMarkdown, renderText, type Table} from './lib/table.js';

type Setup = 'single worker' | 'group';

type Run = {
  setup: Setup;
  devices: string[];
  spawn_to_ready_ms: number;
  decode_tokens_per_second: number[];
  ttft_ms: number[];
  tokens_generated: number[];
  memory_bytes: Record<string, number>;
  /** With --streams N > 1: tokens of N concurrent streams over their wall time, per run. */
  aggregate_tokens_per_second: number[];
  text: string;
};

function usage(message?: string): never {
  if (message !== undefined) {
    process.stderr.write(`bench:group: ${message}\n`);
  }
  process.stderr.write(
    'usage: node --import tsx bench/worker-group.ts --model <gguf> [--devices cpu,cpu | cuda:0,cuda:1,...] [--type llamacpp|candle]\n' +
      '       [--streams 1] [--runs 5] [--max-tokens 128] [--threads N] [--label name] [--out folder]\n',
  );
  process.exit(message === undefined ? 0 : 2);
}

const args = parseArgsOrUsage(
  process.argv.slice(2),
  {
    model: {type: 'string'},
    devices: {type: 'string', default: 'cpu,cpu'},
    type: {type: 'string', default: 'llamacpp'},
    streams: {type: 'string', default: '1'},
    runs: {type: 'string', default: '5'},
    'max-tokens': {type: 'string', default: '128'},
    threads: {type: 'string'},
    label: {type: 'string'},
    out: {type: 'string'},
    help: {type: 'boolean', short: 'h', default: false},
  },
  usage,
);

const prompt = 'Write a short story about a lighthouse keeper who finds a message in a bottle.';
const streams = Number(args.streams);
if (!Number.isInteger(streams) || streams < 1 || streams > 64) {
  usage('--streams: a whole number from 1 to 64');
}
if (args.type !== 'llamacpp' && args.type !== 'candle') {
  usage('--type: llamacpp or candle');
}

function gpuMemoryUsed(): Map<string, number> {
  const used = new Map<string, number>();
  try {
    const text = execFileSync('nvidia-smi', ['--query-gpu=index,memory.used', '--format=csv,noheader,nounits'], {timeout: 15_000}).toString();
    for (const line of text.trim().split('\n')) {
      const [index, mib] = line.split(',').map(cell => cell.trim());
      used.set(`cuda:${index}`, Number(mib) * 2 ** 20);
    }
  } catch {
    // no GPU: CPU figures only
  }
  return used;
}

function treeRss(pid: number): number {
  let total = 0;
  const children = (parent: number): number[] => {
    try {
      return fs.readFileSync(`/proc/${parent}/task/${parent}/children`, 'utf8').trim().split(/\s+/).filter(Boolean).map(Number);
    } catch {
      return [];
    }
  };
  const stack = [pid];
  while (stack.length > 0) {
    const current = stack.pop()!;
    try {
      total += Number(/^VmRSS:\s+(\d+) kB$/m.exec(fs.readFileSync(`/proc/${current}/status`, 'utf8'))?.[1] ?? 0) * 1024;
    } catch {
      continue;
    }
    stack.push(...children(current));
  }
  return total;
}

/** Polls `current` until `ready`; a failed record ends the benchmark. */
async function pollReady<T extends {reason: string | null}>(
  what: string,
  current: () => Promise<T>,
  ready: (record: T) => boolean,
  failed: (record: T) => boolean,
): Promise<T> {
  return pollUntil(
    `${what} to be ready`,
    async () => {
      const record = await current();
      if (failed(record)) {
        throw new Error(`${what} failed: ${record.reason}`);
      }
      return ready(record) ? record : undefined;
    },
    600_000,
    50,
  );
}

async function measure(hive: HiveProcess, setup: Setup, devices: string[], model: string): Promise<Run> {
  const before = gpuMemoryUsed();
  const threads = args.threads === undefined ? {} : {threads: Number(args.threads)};
  const began = performance.now();
  const shape = {type: args.type, context_size: 2048, parallel: streams, restart: 'never' as const, force: true, ...threads};
  const {client} = hive;
  let memberIds: string[];
  let stop: () => Promise<unknown>;
  if (setup === 'group') {
    const spawned = await client.spawnGroup({model, devices, ...shape}, {timeoutMs: 60_000});
    const group = await pollReady(
      `group ${spawned.group_id}`,
      () => client.getGroup(spawned.group_id),
      record => record.health === 'healthy',
      record => record.health === 'failed',
    );
    memberIds = [group.coordinator.worker_id, ...group.workers.map(shard => shard.worker_id)];
    stop = () => client.stopGroup(group.group_id, {timeoutMs: 120_000});
  } else {
    const spawned = await client.spawnWorker({model, device: devices[0], ...shape}, {timeoutMs: 60_000});
    const worker = await pollReady(
      `worker ${spawned.worker_id}`,
      () => client.getWorker(spawned.worker_id),
      record => record.state === 'ready',
      record => record.state === 'failed',
    );
    memberIds = [worker.worker_id];
    stop = () => client.stopWorker(worker.worker_id, {timeoutMs: 120_000});
  }
  const spawnToReady = performance.now() - began;
  const pids = (await Promise.all(memberIds.map(async id => (await client.getWorker(id)).pid))).filter(pid => pid !== null);
  pids.forEach(pid => hive.trackWorker(pid));

  const run: Run = {
    setup,
    devices,
    spawn_to_ready_ms: round(spawnToReady, 0),
    decode_tokens_per_second: [],
    ttft_ms: [],
    tokens_generated: [],
    memory_bytes: {},
    aggregate_tokens_per_second: [],
    text: '',
  };
  // One warm-up generation (CUDA graphs, caches), then the measured ones.
  for (let index = 0; index <= Number(args.runs); index++) {
    const timing = await streamInfer(client, {prompt, max_tokens: Number(args['max-tokens']), temperature: 0});
    if (index > 0) {
      run.decode_tokens_per_second.push(round(timing.decodeTokensPerSecond, 1));
      run.ttft_ms.push(round(timing.ttftMs, 1));
      run.tokens_generated.push(timing.tokensGenerated);
    }
  }
  for (let index = 0; streams > 1 && index < Number(args.runs); index++) {
    const started = performance.now();
    const all = await Promise.all(Array.from({length: streams}, () => streamInfer(client, {prompt, max_tokens: Number(args['max-tokens']), temperature: 0})));
    const tokens = all.reduce((sum, timing) => sum + timing.tokensGenerated, 0);
    run.aggregate_tokens_per_second.push(round(tokens / ((performance.now() - started) / 1000), 1));
  }
  const answer = await client.infer({prompt, max_tokens: 24, temperature: 0}, {timeoutMs: 60_000});
  run.text = answer.text;
  const after = gpuMemoryUsed();
  for (const device of new Set(devices)) {
    run.memory_bytes[device] =
      device === 'cpu' ? pids.reduce((sum, pid) => sum + treeRss(pid), 0) : Math.max(0, (after.get(device) ?? 0) - (before.get(device) ?? 0));
  }
  await stop();
  return run;
}

async function engineEnv(): Promise<Record<string, string>> {
  let server = process.env.RBEE_LLAMA_SERVER;
  let rpc = process.env.RBEE_GGML_RPC_SERVER;
  if (server === undefined || rpc === undefined) {
    const {findLlamaCpp} = await import('../src/engines/llama-cpp-build.js');
    const installed = findLlamaCpp();
    if (installed === null) {
      throw new Error('no llama.cpp build: run `rbee engines install llama.cpp`, or set RBEE_LLAMA_SERVER and RBEE_GGML_RPC_SERVER');
    }
    server ??= installed.programs['llama-server'];
    rpc ??= installed.programs['ggml-rpc-server'];
  }
  return {RBEE_LLAMA_SERVER: server, RBEE_GGML_RPC_SERVER: rpc};
}

async function main(): Promise<void> {
  installExitHandlers(30 * 60_000);
  const model = args.model;
  if (model === undefined || !fs.existsSync(model)) {
    usage('--model <gguf> is required and must exist');
  }
  const devices = args.devices.split(',').map(device => device.trim());
  // llamacpp: the single worker runs llama-server too, like the coordinator (a set RBEE_LLAMA_SERVER selects it): the same engine on both sides.
  const hive = await startHiveProcess({args: ['--heartbeat-interval', '1000'], env: args.type === 'llamacpp' ? await engineEnv() : {}});
  const runs: Run[] = [];
  try {
    runs.push(await measure(hive, 'single worker', devices.slice(0, 1), model));
    runs.push(await measure(hive, 'group', devices, model));
  } finally {
    await hive.stop();
  }
  const [single, group] = runs as [Run, Run];
  const decode = (run: Run) => median(run.decode_tokens_per_second);
  const aggregate = (run: Run) => median(run.aggregate_tokens_per_second);
  const gib = (bytes: number | undefined) => (bytes === undefined ? '-' : `${fmt(bytes / 2 ** 30, 2)} GiB`);
  const gpus = nvidiaGpus();
  const where = gpus.length > 0 ? `${gpus.length} × ${gpus[0]!.name}` : `${machineInfo().cpu_model}, ${machineInfo().cores} cores (CPU only)`;
  const table: Table = {
    title: `Worker group vs one worker (${args.type}), ${path.basename(model)} — ${where}`,
    header: [
      'setup',
      'devices',
      'spawn → ready',
      'decode tok/s (median)',
      'ttft ms (median)',
      ...(streams > 1 ? [`aggregate tok/s at ${streams} streams`] : []),
      ...[...new Set(devices)].map(device => `memory ${device}`),
    ],
    rows: runs.map(run => [
      run.setup,
      run.devices.join(','),
      `${fmt(run.spawn_to_ready_ms / 1000, 1)} s`,
      fmt(decode(run)),
      fmt(median(run.ttft_ms)),
      ...(streams > 1 ? [fmt(aggregate(run))] : []),
      ...[...new Set(devices)].map(device => gib(run.memory_bytes[device])),
    ]),
    notes: [
      `group / single decode: ${fmtRatio(ratio(decode(group), decode(single)))}; ${args.runs} measured generations of ${args['max-tokens']} tokens each (greedy), after one warm-up`,
      ...(streams > 1 ? [`group / single aggregate at ${streams} streams: ${fmtRatio(ratio(aggregate(group), aggregate(single)))}`] : []),
      `same greedy text from both: ${single.text === group.text ? 'yes' : `no (single: ${JSON.stringify(single.text)}, group: ${JSON.stringify(group.text)})`}`,
    ],
  };
  process.stdout.write(`${renderText(table)}\n`);
  if (args.out !== undefined) {
    fs.mkdirSync(args.out, {recursive: true});
    const label = args.label ?? 'worker-group';
    const result = {
      machine: {...machineInfo(), gpus},
      model: path.basename(model),
      model_bytes: fs.statSync(model).size,
      runs,
      type: args.type,
      streams,
      group_over_single_decode: ratio(decode(group), decode(single)),
      ...(streams > 1 ? {group_over_single_aggregate: ratio(aggregate(group), aggregate(single))} : {}),
    };
    fs.writeFileSync(path.join(args.out, `${label}.json`), `${JSON.stringify(result, null, 2)}\n`);
    fs.writeFileSync(path.join(args.out, `${label}.md`), `${renderMarkdown(table)}\n`);
  }
}

main().then(cleanupAll, async error => {
  process.stderr.write(`worker-group bench: ${(error as Error).stack ?? String(error)}\n`);
  await cleanupAll();
  process.exitCode = 1;
});
