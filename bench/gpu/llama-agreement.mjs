// Greedy agreement of the candle engine with llama.cpp's own build on the same machine (the CUDA
// build on a GPU): the same prompt token ids go to both; llama.cpp's tokens come from
// bench/gpu/llama-ref/rbee-llama-ref (libllama, all layers on the GPU), the candle engine's from
// the napi binding, once per forward path asked for. Also teacher forcing: the candle engine
// scores llama.cpp's continuation, and its top-1 is compared with llama.cpp's token at every
// position (so one early divergence does not hide how the rest compares). Plain JS on the
// binding, no dependencies, so it runs from the unpacked device bundle.
//
//   node llama-agreement.mjs <napi loader> <model.gguf> <rbee-llama-ref> <out.json> [--tokens 32] [--forwards graph,tensor]
//     [--refs batch,serial,nofa]
//
// --forwards: candle paths; `graph-serial` is the graph path with every prompt on the decode graph
// (RBEE_CANDLE_PREFILL=graph), the same arithmetic as its decode steps; `cpu` is the engine on
// the CPU (the ggml forward, llama.cpp's CPU arithmetic).
// --refs: llama.cpp runs (rbee-llama-ref's modes; the first is the reference the teacher forcing
// scores): `serial` feeds the prompt a token at a time, so llama.cpp's prompt takes its decode
// kernels too; `cpu` is llama.cpp's CPU backend. Every ref is also compared with the first: how far llama.cpp agrees with itself.
import {spawnSync} from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import {pathToFileURL} from 'node:url';

const [loaderPath, modelPath, refBinary, outPath, ...rest] = process.argv.slice(2);
if (!loaderPath || !modelPath || !refBinary || !outPath) {
  console.error('usage: node llama-agreement.mjs <native/index.js> <model.gguf> <rbee-llama-ref> <out.json> [--tokens N] [--forwards a,b]');
  process.exit(2);
}
const option = (name, fallback) => {
  const i = rest.indexOf(name);
  return i >= 0 ? rest[i + 1] : fallback;
};
const maxTokens = Number(option('--tokens', '32'));
const forwards = option('--forwards', 'graph,tensor').split(',');
const refModes = option('--refs', 'batch').split(',');
const binding = await import(pathToFileURL(path.resolve(loaderPath)).href);

// bench/lib/agreement-prompts.ts's prompts (kept in step by hand: this file runs without the repo).
const texts = [
  'The capital of France is',
  'def fibonacci(n):\n    """Return the n-th Fibonacci number."""\n',
  'Once upon a time, in a small village at the edge of a great forest, there lived an old woodcutter and his three daughters. ' +
    'The eldest was proud, the second was clever, and the youngest was kind to every creature she met. One winter morning, ' +
    "she found a small fox caught in a hunter's trap near the frozen river. Although her hands were cold and her father had " +
    'warned her never to wander so far from home, she knelt in the snow and',
  'Q: What are the three primary colors?\nA:',
];

function generate(model, tokens) {
  return new Promise((resolve, reject) => {
    const started = model.generate({tokens, maxTokens, temperature: 0}, event => {
      if (event.kind === 'done') resolve(event.result);
      else if (event.kind === 'error') reject(new Error(`${event.error.code}: ${event.error.message}`));
    });
    if (started && started.code) reject(new Error(`${started.code}: ${started.message}`));
  });
}

async function load(name) {
  const forward = name === 'graph-serial' ? 'graph' : name;
  // Read by the engine at each prompt (std::env), so it applies to this model's calls only.
  if (name === 'graph-serial') process.env.RBEE_CANDLE_PREFILL = 'graph';
  else delete process.env.RBEE_CANDLE_PREFILL;
  const options = name === 'cpu' ? {device: 'cpu', forward: 'ggml'} : {device: 'cuda:0', forward};
  const model = await binding.Model.load({path: modelPath, contextSize: 2048, ...options});
  if (!(model instanceof binding.Model)) throw new Error(`load ${forward}: ${model.code}: ${model.message}`);
  return model;
}

// 1. The prompts as token ids (BOS first), with the candle engine's tokenizer: both sides evaluate these ids.
const first = await load(forwards[0]);
const prompts = texts.map(text => Array.from(first.tokenize(text, true)));
first.close();
const promptsFile = `${outPath}.prompts.txt`;
fs.writeFileSync(promptsFile, `${prompts.map(ids => ids.join(' ')).join('\n')}\n`);

// 2. llama.cpp's greedy tokens, once per mode.
const references = {};
const backendLine = [];
// One rbee-llama-ref run; with `forcedFile`, teacher-forced on that file's continuations.
function llamaRun(mode, refFile, forcedFile) {
  const t0 = performance.now();
  const args = [modelPath, String(maxTokens), promptsFile, refFile, mode, ...(forcedFile ? [forcedFile] : [])];
  const ran = spawnSync(refBinary, args, {encoding: 'utf8', timeout: 300_000});
  if (ran.status !== 0) {
    console.log(`[agreement] rbee-llama-ref ${mode} failed (${ran.status ?? ran.signal}): ${(ran.stderr ?? '').slice(-3000)}`);
    process.exit(1);
  }
  if (backendLine.length === 0) backendLine.push(...(ran.stderr.match(/.*(CUDA0|ggml_cuda_init|using device).*/g) ?? []).slice(0, 3));
  console.log(
    `[agreement] llama.cpp ${forcedFile ? 'teacher-forced ' : 'reference '}(${mode}) in ${(performance.now() - t0).toFixed(0)} ms; ${backendLine.join(' | ')}`,
  );
  return JSON.parse(fs.readFileSync(refFile, 'utf8'));
}
for (const mode of refModes) references[mode] = llamaRun(mode, `${outPath}.llama-${mode}.json`);
const reference = references[refModes[0]];
const sameTokens = (a, b) => a.reduce((n, t, p) => n + (t === b[p] ? 1 : 0), 0);
// How far llama.cpp agrees with itself: each other mode's greedy text against the first's, and
// its top-1 at each position of the first's text (teacher-forced, as the candle paths are scored).
const forcedFile = `${outPath}.llama-${refModes[0]}.continuations.txt`;
fs.writeFileSync(forcedFile, `${reference.prompts.map(entry => entry.tokens.join(' ')).join('\n')}\n`);
const llamaSelf = {};
for (const mode of refModes.slice(1)) {
  const of = reference.prompts.length * maxTokens;
  const agreed = references[mode].prompts.reduce((n, entry, i) => n + sameTokens(entry.tokens, reference.prompts[i].tokens), 0);
  const scored = llamaRun(mode, `${outPath}.llama-${mode}-forced.json`, forcedFile);
  const forced = scored.prompts.reduce((n, entry, i) => n + sameTokens(entry.tokens, reference.prompts[i].tokens), 0);
  llamaSelf[mode] = {agreed, teacherForced: forced, of};
  console.log(`[agreement] llama.cpp ${mode} vs llama.cpp ${refModes[0]}: greedy ${agreed}/${of}, teacher-forced top-1 ${forced}/${of}`);
}

// 3. Each forward path against it.
const summary = {
  model: path.basename(modelPath),
  maxTokens,
  reference: reference.engine,
  refModes,
  llamaBackend: backendLine,
  llamaSelf,
  prompts,
  paths: {},
  errors: [],
};
for (const forward of forwards) {
  try {
    const model = await load(forward);
    const rows = [];
    let greedy = 0,
      greedyOf = 0,
      forced = 0,
      forcedOf = 0;
    const byRef = Object.fromEntries(refModes.map(mode => [mode, 0]));
    for (const [i, entry] of reference.prompts.entries()) {
      const expected = entry.tokens;
      const result = await generate(model, entry.prompt_tokens);
      // generate() stops at an end-of-generation token; llama.cpp's reference runs on: the missing positions count as misses.
      let agreed = 0,
        firstDivergence = null;
      for (let p = 0; p < expected.length; p++) {
        if (result.tokens[p] === expected[p]) agreed++;
        else firstDivergence ??= p;
      }
      for (const mode of refModes) byRef[mode] += sameTokens(references[mode].prompts[i].tokens, result.tokens);
      const dists = await model.nextTokenProbabilities(entry.prompt_tokens, expected, 2);
      if (!Array.isArray(dists)) throw new Error(`nextTokenProbabilities: ${dists.code}: ${dists.message}`);
      const top1 = dists.filter((dist, p) => dist[0].token === expected[p]).length;
      const misses = dists
        .map((dist, p) => ({p, llama: expected[p], candleTop2: dist, llamaMargin: entry.top1_margin[p]}))
        .filter(m => m.candleTop2[0].token !== m.llama);
      greedy += agreed;
      greedyOf += expected.length;
      forced += top1;
      forcedOf += dists.length;
      rows.push({
        prompt: i,
        promptTokens: entry.prompt_tokens.length,
        agreed,
        length: expected.length,
        firstDivergence,
        candleTokens: result.tokens,
        llamaTokens: expected,
        teacherForcedTop1: top1,
        teacherForcedMisses: misses,
      });
      console.log(
        `[agreement] ${forward} prompt ${i} (${entry.prompt_tokens.length} tokens): greedy ${agreed}/${expected.length}${firstDivergence === null ? '' : ` (first divergence at ${firstDivergence}: candle ${result.tokens[firstDivergence]}, llama ${expected[firstDivergence]}, llama's top-1 margin ${entry.top1_margin[firstDivergence]})`}; teacher-forced top-1 ${top1}/${dists.length}`,
      );
    }
    summary.paths[forward] = {forward: model.info.forward, greedy, greedyOf, greedyByRef: byRef, teacherForced: forced, teacherForcedOf: forcedOf, rows};
    const others = refModes
      .slice(1)
      .map(mode => `, vs llama.cpp ${mode} ${byRef[mode]}/${greedyOf}`)
      .join('');
    console.log(`[agreement] ${forward}: greedy ${greedy}/${greedyOf}${others}, teacher-forced top-1 ${forced}/${forcedOf}`);
    model.close();
  } catch (error) {
    console.log(`[agreement] ${forward}: FAILED: ${error.message}`);
    summary.errors.push({forward, message: String(error.message)});
  }
}
fs.writeFileSync(outPath, `${JSON.stringify(summary, null, 1)}\n`);
