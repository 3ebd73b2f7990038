// The CUDA graph decode path against the eager tensor path, in one process on one GPU: same
// GGUF, same token prompts, greedy; tokens compared, decode tok/s of each, and teacher-forced
// top-1 agreement (the graph path scoring the tensor path's greedy continuation). Plain JS on
// the napi binding, no dependencies, so it runs from scripts/device-bundle.sh's unpacked files.
//
//   node graph-decode.mjs <napi loader (native/index.js)> <model.gguf> <out.json> [--tokens 128] [--runs 3] [--ctx 2048]
//
// Decode tok/s = tokens after the first / (total_ms - prompt_ms): the first token comes out of
// the prompt's evaluation (the graph path: 8 prompt tokens a replay of its batch-8 graph).
import fs from 'node:fs';
import path from 'node:path';
import {pathToFileURL} from 'node:url';

const [loaderPath, modelPath, outPath, ...rest] = process.argv.slice(2);
if (!loaderPath || !modelPath || !outPath) {
  console.error('usage: node graph-decode.mjs <native/index.js> <model.gguf> <out.json> [--tokens N] [--runs N] [--ctx N]');
  process.exit(2);
}
const flag = (name, fallback) => {
  const i = rest.indexOf(name);
  return i >= 0 ? Number(rest[i + 1]) : fallback;
};
const maxTokens = flag('--tokens', 128);
const runs = flag('--runs', 3);
const ctx = flag('--ctx', 2048);
const binding = await import(pathToFileURL(path.resolve(loaderPath)).href);

function generate(model, tokens) {
  return new Promise((resolve, reject) => {
    const started = model.generate({tokens, maxTokens, temperature: 0}, event => {
      if (event.kind === 'done') resolve(event.result);
      else if (event.kind === 'error') reject(new Error(`${event.error.code}: ${event.error.message}`));
    });
    if (started && started.code) reject(new Error(`${started.code}: ${started.message}`));
  });
}

async function load(forward) {
  const t0 = performance.now();
  const model = await binding.Model.load({path: modelPath, device: 'cuda:0', contextSize: ctx, forward});
  if (!(model instanceof binding.Model)) throw new Error(`load ${forward}: ${model.code}: ${model.message}`);
  const loadMs = performance.now() - t0;
  console.log(
    `[graph-decode] ${forward}: loaded in ${loadMs.toFixed(0)} ms, forward=${model.info.forward}, weights ${(model.info.weightBytes / 1e9).toFixed(3)} GB, kv ${(model.info.kvCacheBytes / 1e9).toFixed(3)} GB`,
  );
  return {model, loadMs};
}

// Prompts: a short one (decode at ~20 positions) and a long one (decode past ~1000).
const vocab = 120000;
const prompt = (n, seed) => Array.from({length: n}, (_, i) => 1000 + ((i * 7919 + seed * 104729) % vocab));
const prompts = [
  {name: 'short', tokens: prompt(16, 1)},
  {name: 'long', tokens: prompt(1000, 2)},
];

const summary = {model: path.basename(modelPath), maxTokens, runs, ctx, paths: {}, agreement: [], errors: []};
const results = {};
for (const forward of ['tensor', 'graph']) {
  try {
    const {model, loadMs} = await load(forward);
    const entry = {
      loadMs,
      forward: model.info.forward,
      weightBytes: model.info.weightBytes,
      kvCacheBytes: model.info.kvCacheBytes,
      memory: model.memory(),
      prompts: {},
    };
    results[forward] = {model, entry};
    summary.paths[forward] = entry;
    await generate(model, prompts[0].tokens.slice(0, 4)); // warm-up (JIT, first graph replay, cuBLAS handles)
    for (const p of prompts) {
      const times = [];
      let tokens;
      for (let r = 0; r < runs; r++) {
        const result = await generate(model, p.tokens);
        tokens = result.tokens;
        const decodeMs = result.totalMs - result.promptMs;
        times.push({promptMs: result.promptMs, decodeMs, generated: result.tokensGenerated, tokS: (result.tokensGenerated - 1) / (decodeMs / 1000)});
      }
      const best = times.reduce((a, b) => (a.tokS > b.tokS ? a : b));
      entry.prompts[p.name] = {promptTokens: p.tokens.length, runs: times, bestTokS: best.tokS, promptTokS: p.tokens.length / (best.promptMs / 1000), tokens};
      console.log(
        `[graph-decode] ${forward} ${p.name} (${p.tokens.length} prompt tokens): decode ${best.tokS.toFixed(1)} tok/s (best of ${runs}: ${times.map(t => t.tokS.toFixed(1)).join(', ')}), prompt ${(p.tokens.length / (best.promptMs / 1000)).toFixed(0)} tok/s, ${tokens.length} tokens: ${tokens.slice(0, 12).join(' ')} ...`,
      );
    }
  } catch (error) {
    console.log(`[graph-decode] ${forward}: FAILED: ${error.message}`);
    summary.errors.push({forward, message: String(error.message)});
  }
}

// Same greedy tokens? And teacher forcing: each path scores the tensor path's greedy continuation.
if (results.tensor?.entry.prompts.long && results.graph) {
  for (const p of prompts) {
    try {
      const a = results.tensor.entry.prompts[p.name].tokens;
      const b = results.graph.entry.prompts[p.name]?.tokens ?? [];
      let same = 0;
      while (same < Math.min(a.length, b.length) && a[same] === b[same]) same++;
      const forced = await results.graph.model.nextTokenProbabilities(p.tokens, a, 2);
      if (!Array.isArray(forced)) throw new Error(`nextTokenProbabilities: ${forced.code}: ${forced.message}`);
      const reference = await results.tensor.model.nextTokenProbabilities(p.tokens, a, 2);
      const top1 = forced.filter((dist, i) => dist[0].token === a[i]).length;
      const record = {
        prompt: p.name,
        tensorTokens: a.length,
        graphTokens: b.length,
        identicalPrefix: same,
        teacherForcedTop1: top1,
        teacherForcedPositions: forced.length,
        firstPositions: forced.slice(0, 3).map((dist, i) => ({graph: dist, tensor: Array.isArray(reference) ? reference[i] : null})),
        firstDivergence:
          same < Math.min(a.length, b.length)
            ? {index: same, tensor: a[same], graph: b[same], graphTop2: forced[same], tensorTop2: Array.isArray(reference) ? reference[same] : null}
            : null,
      };
      summary.agreement.push(record);
      console.log(
        `[graph-decode] ${p.name}: greedy tokens identical for ${same}/${a.length}; teacher-forced top-1 equal at ${top1}/${forced.length}; first position graph ${JSON.stringify(forced[0])} tensor ${JSON.stringify(Array.isArray(reference) ? reference[0] : reference)}`,
      );
      if (record.firstDivergence) console.log(`[graph-decode] ${p.name}: first divergence ${JSON.stringify(record.firstDivergence)}`);
    } catch (error) {
      console.log(`[graph-decode] agreement ${p.name}: FAILED: ${error.message}`);
      summary.errors.push({agreement: p.name, message: String(error.message)});
    }
  }
}
// The graph path's batched prefill (PREFILL_ROWS tokens a replay, a padded last chunk) against
// the same prompt fed one token per replay: the kernels' per-row arithmetic does not depend on
// the batch width, so the distributions must be bit-identical.
if (results.graph) {
  for (const n of [16, 100]) {
    try {
      const tokens = prompt(n, 3);
      const batched = await results.graph.model.nextTokenProbabilities(tokens, [tokens[0]], 5);
      const single = await results.graph.model.nextTokenProbabilities(tokens.slice(0, 1), [...tokens.slice(1), tokens[0]], 5);
      if (!Array.isArray(batched) || !Array.isArray(single)) throw new Error('nextTokenProbabilities failed');
      const a = batched[0],
        b = single[n - 1];
      const identical = JSON.stringify(a) === JSON.stringify(b);
      // Prompts longer than 8 tokens take the GEMM prefill (f16 products, not the decode step's
      // integer ones): close, not bit-identical. The largest probability gap over the top 5.
      const gap = Math.max(...a.map(x => Math.abs(x.probability - (b.find(y => y.token === x.token)?.probability ?? 0))));
      const sameTop1 = a[0].token === b[0].token;
      summary.prefillCheck = [...(summary.prefillCheck ?? []), {promptTokens: n, identical, sameTop1, maxTop5ProbabilityGap: gap, batched: a, oneByOne: b}];
      console.log(
        `[graph-decode] prefill ${n} tokens: prompt path vs one a replay ${identical ? 'bit-identical' : 'different'}, top-1 ${sameTop1 ? 'same' : 'DIFFERENT'}, top-5 probability gap ${gap.toExponential(2)}: ${JSON.stringify(a[0])} vs ${JSON.stringify(b[0])}`,
      );
    } catch (error) {
      summary.errors.push({prefillCheck: n, message: String(error.message)});
      console.log(`[graph-decode] prefill check ${n}: FAILED: ${error.message}`);
    }
  }
}
for (const {model} of Object.values(results)) model.close();
fs.writeFileSync(outPath, JSON.stringify(summary, null, 1));
console.log(`[graph-decode] wrote ${outPath}`);
