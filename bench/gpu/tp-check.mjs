// Tensor-parallel candle ranks on CUDA (issue 14), checked on whatever GPUs are lent: the group's
// ranks are processes, one per device in --devices (the same device may repeat: CUDA IPC maps a
// buffer of another process on the same GPU as it maps a peer GPU's, so a one-GPU machine checks
// the split arithmetic and the exchange protocol, though not the speed). In the same run, the
// single-GPU graph path on the first device is the reference. Plain JS on the napi binding, no
// dependencies, so it runs from scripts/device-bundle.sh's unpacked files.
//
//   node tp-check.mjs <napi loader (native/index.js)> <model.gguf> <out.json>
//        [--devices cuda:0,cuda:0] [--tokens 64] [--parallel 1] [--ctx 2048] [--runs 3] [--timeout-ms 2000] [--forward graph]
//
// What it records, per prompt: the single GPU's greedy tokens and the group's, how many agree
// before the first difference (the group adds the ranks' O and down products in another order, so
// a late divergence is expected, an early one is a bug), the group's teacher-forced top-1 on the
// single GPU's tokens (near all of them unless something is wrong), decode tok/s of each; with --parallel N > 1,
// whether N batched streams of the group each get what one gets alone, and the aggregate tok/s of N
// streams at once on the group and on the single GPU; then a shard killed with SIGKILL mid-generation, and how long the
// coordinator took to fail the request (the goal: within the exchange timeout, no hang).
import {spawn} from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import {fileURLToPath, pathToFileURL} from 'node:url';

const [loaderPath, modelPath, outPath, ...rest] = process.argv.slice(2);
const flag = (name, fallback) => {
  const i = rest.indexOf(name);
  return i >= 0 ? rest[i + 1] : fallback;
};
const binding = await import(pathToFileURL(path.resolve(loaderPath)).href);

// A shard process: `node tp-check.mjs <loader> <model> - --shard <json>`.
if (rest.includes('--shard')) {
  const options = JSON.parse(flag('--shard'));
  const shard = await binding.Shard.open(options);
  if (!(shard instanceof binding.Shard)) {
    console.error(`[tp-check shard ${options.rank}] open: ${shard.code}: ${shard.message}`);
    process.exit(3);
  }
  console.log(`listening ${options.endpoint}`);
  const ended = await shard.serve();
  if (ended !== null) {
    console.error(`[tp-check shard ${options.rank}] ${ended.code}: ${ended.message}`);
    process.exit(4);
  }
  process.exit(0);
}

if (!loaderPath || !modelPath || !outPath) {
  console.error(
    'usage: node tp-check.mjs <native/index.js> <model.gguf> <out.json> [--devices cuda:0,cuda:0] [--tokens N] [--parallel N] [--ctx N] [--runs N]',
  );
  process.exit(2);
}
const devices = flag('--devices', 'cuda:0,cuda:0').split(',');
const maxTokens = Number(flag('--tokens', 64));
const parallel = Number(flag('--parallel', 1));
const ctx = Number(flag('--ctx', 2048));
const runs = Number(flag('--runs', 3));
const timeoutMs = Number(flag('--timeout-ms', 2000));
// graph on GPUs; ggml for CPU ranks (--devices cpu,cpu), which checks this script where no GPU is.
const forward = flag('--forward', 'graph');
const world = devices.length;
const log = message => console.log(`[tp-check] ${message}`);

function generate(model, tokens, tokensWanted = maxTokens) {
  return new Promise((resolve, reject) => {
    const started = model.generate({tokens, maxTokens: tokensWanted, temperature: 0}, event => {
      if (event.kind === 'done') resolve(event.result);
      else if (event.kind === 'error') reject(new Error(`${event.error.code}: ${event.error.message}`));
    });
    if (started && started.code) reject(new Error(`${started.code}: ${started.message}`));
  });
}

async function timed(model, tokens) {
  const result = await generate(model, tokens);
  const decodeMs = result.totalMs - result.promptMs;
  return {tokens: Array.from(result.tokens), decodeTokS: ((result.tokensGenerated - 1) / decodeMs) * 1000};
}

const median = values => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)];

// `parallel` streams at once (the short prompt each), tokens of all over the wall time; median of the runs.
async function aggregate(model) {
  const rates = [];
  for (let r = 0; r < runs; r++) {
    const t0 = performance.now();
    const all = await Promise.all(Array.from({length: parallel}, () => generate(model, prompts[0].tokens)));
    rates.push(all.reduce((sum, result) => sum + result.tokensGenerated, 0) / ((performance.now() - t0) / 1000));
  }
  return median(rates);
}
const vocab = 30000;
const prompt = (n, seed) => Array.from({length: n}, (_, i) => 2 + ((i * 7919 + seed * 104729) % vocab));
const prompts = [
  {name: 'short', tokens: prompt(16, 1)},
  {name: 'long', tokens: prompt(400, 2)},
];

function freePort() {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const {port} = server.address();
      server.close(() => resolve(port));
    });
  });
}

async function startShards(secret) {
  const shards = [];
  for (let rank = 1; rank < world; rank++) {
    const endpoint = `127.0.0.1:${await freePort()}`;
    const options = {path: modelPath, rank, world, endpoint, secret, contextSize: ctx, device: devices[rank], parallel, timeoutMs};
    const child = spawn(process.execPath, [fileURLToPath(import.meta.url), loaderPath, modelPath, '-', '--shard', JSON.stringify(options)], {
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    const exited = new Promise(resolve => child.once('exit', (code, signal) => resolve({code, signal})));
    shards.push({rank, endpoint, child, exited});
  }
  return shards;
}

const summary = {model: path.basename(modelPath), devices, world, maxTokens, parallel, ctx, runs, timeoutMs, prompts: [], errors: []};
try {
  // The reference: the graph path on one GPU.
  const single = await binding.Model.load({path: modelPath, device: devices[0], contextSize: ctx, forward, parallel});
  if (!(single instanceof binding.Model)) throw new Error(`single load: ${single.code}: ${single.message}`);
  const reference = {};
  for (const p of prompts) {
    const samples = [];
    for (let r = 0; r < runs; r++) samples.push(await timed(single, p.tokens));
    reference[p.name] = {tokens: samples[0].tokens, decodeTokS: median(samples.map(s => s.decodeTokS))};
  }
  const singleAggregate = parallel > 1 ? await aggregate(single) : null;
  single.close();

  const secret = crypto.randomBytes(24).toString('hex');
  const shards = await startShards(secret);
  const t0 = performance.now();
  const group = await binding.Model.load({
    path: modelPath,
    device: devices[0],
    contextSize: ctx,
    forward,
    parallel,
    tensorParallel: {shards: shards.map(s => s.endpoint), secret, timeoutMs},
  });
  if (!(group instanceof binding.Model)) throw new Error(`group load: ${group.code}: ${group.message}`);
  summary.groupLoadMs = performance.now() - t0;
  summary.groupInfo = {forward: group.info.forward, parallel: group.info.parallel, weightBytes: group.info.weightBytes, kvCacheBytes: group.info.kvCacheBytes};
  log(`group of ${world} loaded in ${summary.groupLoadMs.toFixed(0)} ms: ${JSON.stringify(summary.groupInfo)}`);
  for (const p of prompts) {
    const samples = [];
    for (let r = 0; r < runs; r++) samples.push(await timed(group, p.tokens));
    const ref = reference[p.name];
    const got = samples[0].tokens;
    let same = 0;
    while (same < Math.min(ref.tokens.length, got.length) && ref.tokens[same] === got[same]) same++;
    const repeatable = samples.every(s => s.tokens.join(',') === got.join(','));
    // Teacher-forced: the group fed the single GPU's greedy tokens; where its own top choice is
    // the same token. Robust to a near-tie that sends the free-running texts apart.
    const forced = await group.nextTokenProbabilities(p.tokens, ref.tokens, 2);
    if (!Array.isArray(forced)) throw new Error(`nextTokenProbabilities: ${forced.code}: ${forced.message}`);
    const forcedTop1 = forced.filter((dist, i) => dist[0]?.token === ref.tokens[i]).length;
    const entry = {
      name: p.name,
      promptTokens: p.tokens.length,
      agreeBeforeFirstDifference: same,
      of: ref.tokens.length,
      teacherForcedTop1: forcedTop1,
      firstDifference: same < ref.tokens.length ? {index: same, single: ref.tokens[same], group: got[same], groupTop2: forced[same]} : null,
      groupRepeatable: repeatable,
      singleDecodeTokS: ref.decodeTokS,
      groupDecodeTokS: median(samples.map(s => s.decodeTokS)),
      single: ref.tokens,
      group: got,
    };
    summary.prompts.push(entry);
    log(
      `${p.name}: ${same}/${ref.tokens.length} tokens agree before the first difference, teacher-forced top-1 ${forcedTop1}/${ref.tokens.length}; repeatable ${repeatable}; decode ${entry.singleDecodeTokS.toFixed(1)} vs ${entry.groupDecodeTokS.toFixed(1)} tok/s (single, group)`,
    );
  }
  if (parallel > 1) {
    // Every stream at once: each must get what it gets alone.
    const alone = summary.prompts[0].group;
    const batch = await Promise.all(Array.from({length: parallel}, () => generate(group, prompts[0].tokens)));
    summary.batched = {streams: parallel, sameAsAlone: batch.filter(r => Array.from(r.tokens).join(',') === alone.join(',')).length};
    log(`batched: ${summary.batched.sameAsAlone}/${parallel} streams got the tokens they get alone`);
    summary.aggregate = {streams: parallel, singleTokS: singleAggregate, groupTokS: await aggregate(group)};
    log(`aggregate at ${parallel} streams: ${summary.aggregate.singleTokS.toFixed(1)} vs ${summary.aggregate.groupTokS.toFixed(1)} tok/s (single, group)`);
  }
  // A shard killed mid-generation: the coordinator's request must fail, within the exchange timeout.
  const victim = shards[shards.length - 1];
  const pending = generate(group, prompts[1].tokens, 512).then(
    () => ({failed: false}),
    error => ({failed: true, message: error.message}),
  );
  await new Promise(resolve => setTimeout(resolve, 300));
  const killedAt = performance.now();
  victim.child.kill('SIGKILL');
  const outcome = await pending;
  summary.shardKilled = {...outcome, msAfterKill: performance.now() - killedAt};
  log(`shard ${victim.rank} killed: ${JSON.stringify(summary.shardKilled)}`);
  const after = await generate(group, prompts[0].tokens, 4).then(
    () => 'served',
    error => error.message,
  );
  summary.afterKill = after;
  log(`the next request: ${after}`);
  group.close();
  for (const s of shards) s.child.kill('SIGKILL');
} catch (error) {
  summary.errors.push(String(error?.stack ?? error));
  console.error(`[tp-check] ${error?.stack ?? error}`);
}
fs.writeFileSync(outPath, `${JSON.stringify(summary, null, 2)}\n`);
log(`wrote ${outPath}`);
process.exit(summary.errors.length === 0 ? 0 : 1);
