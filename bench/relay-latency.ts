/**
 * What rbee's relay adds to the time to first token, with the engine's own time taken out: an
 * engine that answers at once (the OpenAI-compatible stand-in of the tests, behind the
 * tensorrt-llm adapter, ticking every --tick-ms) asked four ways, request by request in turn:
 * straight (its /v1/completions), the worker directly (/v1/infer on the worker's port, with the
 * worker's key), through the hive (/v1/infer), and through bench/relay-floor.mjs's lean two-process
 * relay in front of the same engine (the floor: what any two Node processes in the path add). One
 * stream at a time, 8 tokens each; TTFT is request sent → the first token's bytes. The differences of the medians (and the medians of
 * the per-round differences) are what the worker and the hive add; issue 10 §6's H100 run
 * measures the same against llama-server, where the engine's own time varies far more.
 *
 * --no-links: the hive asks the worker over HTTP (RBEE_NO_WORKER_LINKS), for the links' share. It also
 * prints the CPU time the hive and the worker spent per request of each way (/proc/<pid>/stat, summed
 * over the rounds): a cost the machine's scheduling noise does not blur as it does the latencies.
 *
 * With --trace the hive and the worker run with RBEE_STARTUP_TRACE=1 and their marks give each
 * request through the hive a timeline (received, relayed, the worker's steps, the first bytes relayed):
 * the medians say where the relay's time goes. The marks are synchronous writes to stderr, so a traced
 * run adds a little to what it measures; compare its steps, not its totals, with an untraced run.
 *
 *   npm run build && node --import tsx bench/relay-latency.ts [--rounds 300] [--tick-ms 2] [--trace] [--out <file.json>]
 */
import fs from 'node:fs';
import {workerKeyOf} from '../src/http/secrets.js';
import {fakeNvidiaSmi} from '../test/helpers/fake-nvidia-smi.js';
import {StandinEngines} from '../test/helpers/standin-engines.js';
import {startHive} from '../test/helpers/rbee-process.js';
import {spawnStandinWorker, standinProject} from '../test/helpers/trtllm-standin.js';
import {parseArgsOrUsage} from './lib/args.js';
import {startLeanRelay, type LeanRelay} from './lib/lean-relay.js';
import {machineInfo} from './lib/machine.js';
import {processCpuSeconds} from './lib/proc-cpu.js';
import {median, round, summarize} from './lib/stats.js';
import {epochNow, requestMarks, requestTimeline} from './lib/startup-timeline.js';

function usage(message?: string): never {
  if (message !== undefined) {
    process.stderr.write(`relay-latency: ${message}\n`);
  }
  process.stderr.write('usage: node --import tsx bench/relay-latency.ts [--rounds N] [--warmup N] [--tick-ms MS] [--trace] [--no-links] [--out file.json]\n');
  process.exit(message === undefined ? 0 : 2);
}

const values = parseArgsOrUsage(
  process.argv.slice(2),
  {
    rounds: {type: 'string'},
    warmup: {type: 'string'},
    'tick-ms': {type: 'string'},
    trace: {type: 'boolean', default: false},
    'no-links': {type: 'boolean', default: false},
    out: {type: 'string'},
    help: {type: 'boolean', short: 'h', default: false},
  },
  usage,
);
if (values.help) {
  usage();
}
const rounds = Number(values.rounds ?? 300);
const tickMs = Number(values['tick-ms'] ?? 2);
const warmup = Number(values.warmup ?? 30);
if (!Number.isInteger(rounds) || rounds < 10 || !Number.isInteger(warmup) || warmup < 0 || !(tickMs > 0)) {
  usage('--rounds must be an integer ≥ 10, --warmup one ≥ 0 and --tick-ms a positive number');
}

const project = standinProject('rbee-relay-latency-');
// The adapter runs on NVIDIA GPUs only: the hive is shown one card by a stand-in nvidia-smi.
const nvidiaSmi = fakeNvidiaSmi({gpus: [{name: 'stand-in GPU', totalMiB: 81_559, usedMiB: 500}]});
const hive = await startHive({
  cwd: project,
  env: {
    RBEE_STANDIN_TOKEN_MS: String(tickMs),
    RBEE_NVIDIA_SMI: nvidiaSmi,
    ...(values.trace ? {RBEE_STARTUP_TRACE: '1'} : {}),
    ...(values['no-links'] ? {RBEE_NO_WORKER_LINKS: '1'} : {}),
  },
});

/** Request sent → the first token's bytes (a `text` or `token` field in the stream), ms; `sentAt`, on the trace marks' clock. */
async function firstToken(url: string, body: unknown, headers: Record<string, string> = {}): Promise<{ms: number; sentAt: number}> {
  const sentAt = epochNow();
  const t0 = performance.now();
  const response = await fetch(url, {method: 'POST', headers: {'content-type': 'application/json', ...headers}, body: JSON.stringify(body)});
  if (!response.ok || response.body === null) {
    throw new Error(`${url} answered ${response.status}: ${await response.text()}`);
  }
  let first: number | undefined;
  let seen = '';
  for await (const chunk of response.body) {
    if (first === undefined) {
      seen += Buffer.from(chunk).toString();
      if (/"(text|token)"/.test(seen)) {
        first = performance.now() - t0;
      }
    }
  }
  if (first === undefined) {
    throw new Error(`${url}: no token in the answer`);
  }
  return {ms: first, sentAt};
}

let lean: LeanRelay | undefined;
try {
  const worker = await spawnStandinWorker(hive);
  const engineUrl = new StandinEngines('trtllm-standin.mjs').of(worker).url;
  // The worker's key derives from the secret its hive handed it at spawn (its environment at exec).
  const secret = fs
    .readFileSync(`/proc/${worker.pid}/environ`, 'utf8')
    .split('\0')
    .find(entry => entry.startsWith('RBEE_WORKER_SECRET='))
    ?.slice('RBEE_WORKER_SECRET='.length);
  if (secret === undefined) {
    throw new Error("cannot read the worker's secret");
  }
  const prompt = 'Hello there';
  // The floor, same rounds: bench/relay-floor.mjs's lean two-process relay in front of the same engine.
  lean = await startLeanRelay(engineUrl);
  const leanUrl = lean.url;
  const ways = {
    straight: () => firstToken(`${engineUrl}/v1/completions`, {model: 'm', prompt, max_tokens: 8, stream: true}),
    worker: () => firstToken(`${worker.url}/v1/infer`, {prompt, max_tokens: 8, stream: true}, {authorization: `Bearer ${workerKeyOf(secret)}`}),
    hive: () => firstToken(`${hive.url}/v1/infer`, {prompt, max_tokens: 8, stream: true}),
    floor: () => firstToken(`${leanUrl}/v1/infer`, {prompt, max_tokens: 8, stream: true}),
  };
  const samples: Record<keyof typeof ways, number[]> = {straight: [], worker: [], hive: [], floor: []};
  // CPU seconds the hive and the worker spent on each way's requests (clock ticks: summed over many requests, not one).
  const cpu: Record<keyof typeof ways, {hive: number; worker: number}> = {
    straight: {hive: 0, worker: 0},
    worker: {hive: 0, worker: 0},
    hive: {hive: 0, worker: 0},
    floor: {hive: 0, worker: 0},
  };
  const throughHive: Array<{sentAt: number; ms: number}> = [];
  for (let r = 0; r < warmup + rounds; r++) {
    for (const [name, ask] of Object.entries(ways) as [keyof typeof ways, () => Promise<{ms: number; sentAt: number}>][]) {
      const before = {hive: processCpuSeconds(hive.pid), worker: processCpuSeconds(worker.pid)};
      const answer = await ask();
      if (r >= warmup) {
        cpu[name].hive += processCpuSeconds(hive.pid) - before.hive;
        cpu[name].worker += processCpuSeconds(worker.pid) - before.worker;
        samples[name].push(answer.ms);
        if (name === 'hive') {
          throughHive.push(answer);
        }
      }
    }
  }
  let timeline: ReturnType<typeof requestTimeline> | undefined;
  if (values.trace) {
    timeline = requestTimeline(requestMarks({hiveStderr: hive.stderr(), hiveHome: hive.home, workerId: worker.worker_id}), throughHive);
  }
  const paired = (a: number[], b: number[]) => median(a.map((value, i) => value - b[i]!));
  const result = {
    date: new Date().toISOString(),
    traced: values.trace,
    machine: machineInfo(),
    command: `node --import tsx bench/relay-latency.ts --rounds ${rounds} --warmup ${warmup} --tick-ms ${tickMs}${values['no-links'] ? ' --no-links' : ''}`,
    links: !values['no-links'],
    rounds,
    tickMs,
    ttftMs: Object.fromEntries(Object.entries(samples).map(([name, values]) => [name, summarize(values)])),
    addedMs: {
      worker: round(median(samples.worker) - median(samples.straight), 3),
      hive: round(median(samples.hive) - median(samples.worker), 3),
      total: round(median(samples.hive) - median(samples.straight), 3),
      totalPaired: round(paired(samples.hive, samples.straight), 3),
      /** What the lean two-process relay adds (paired by round): any relay of two Node processes, before rbee's code. */
      floorPaired: round(paired(samples.floor, samples.straight), 3),
    },
    /** CPU ms per request of each way, hive and worker processes (utime + stime). */
    cpuMsPerRequest: Object.fromEntries(
      Object.entries(cpu).map(([name, spent]) => [name, {hive: round((spent.hive * 1000) / rounds, 3), worker: round((spent.worker * 1000) / rounds, 3)}]),
    ),
    ...(timeline === undefined ? {} : {timeline}),
  };
  console.log(
    `TTFT medians over ${rounds} rounds (ms): straight ${round(median(samples.straight), 3)}, worker ${round(median(samples.worker), 3)}, hive ${round(median(samples.hive), 3)}`,
  );
  console.log(
    `added by the worker ${result.addedMs.worker} ms, by the hive ${result.addedMs.hive} ms; in all ${result.addedMs.total} ms (paired by round ${result.addedMs.totalPaired} ms)`,
  );
  console.log(
    `the floor: a lean two-process relay (bench/relay-floor.mjs) in front of the same engine adds ${result.addedMs.floorPaired} ms (paired by round)`,
  );
  console.log(
    `CPU ms per request: through the hive: hive ${result.cpuMsPerRequest.hive!.hive}, worker ${result.cpuMsPerRequest.hive!.worker}; at the worker's port: worker ${result.cpuMsPerRequest.worker!.worker}`,
  );
  if (timeline !== undefined) {
    console.log('a request through the hive, medians of ms since it was sent (RBEE_STARTUP_TRACE marks):');
    let previous = 0;
    for (const step of timeline) {
      console.log(
        `  ${step.ms.toFixed(3).padStart(8)}  +${(step.ms - previous).toFixed(3)}  ${step.step}${step.seen < throughHive.length ? ` (in ${step.seen})` : ''}`,
      );
      previous = step.ms;
    }
  }
  if (values.out !== undefined) {
    fs.writeFileSync(values.out, `${JSON.stringify(result, null, 1)}\n`);
    console.log(`wrote ${values.out}`);
  }
} finally {
  lean?.close();
  await hive.stop();
}
