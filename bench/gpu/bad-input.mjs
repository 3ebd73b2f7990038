// Issue 11's "bad input on the GPU path", checked on a real GPU: each case is a load or a request
// the candle engine must refuse with a clear error, leaving nothing behind on the card. Plain JS on
// the napi binding, no dependencies (runs from bench/gpu/issue11-on-gpu.sh's unpacked files).
//
//   node bad-input.mjs <napi loader (native/index.js)> <out.json> --big <model.gguf> --small <model.gguf>
//        [--f16 <model.gguf>]
//
// --big: a model to load with a KV cache that cannot fit the card (the 8B shape, 64 slots of 32,768
//   positions: 256 GiB): `insufficient_vram` before anything is loaded, quickly, and the process
//   holds no more GPU memory after it than its CUDA context did before it.
// --small: a small model (Gemma 3 270M, or a tiny synthetic one) loaded at a context of 256: a prompt longer than that is
//   refused with `prompt_too_long` naming the limit, and the model still answers afterwards.
// --f16: a model whose FFN matrices are F16, a type the graph path has no kernel for: asked for
//   the graph path it fails naming the type; left to choose, it loads on the tensor path.
// Exits 1 when a case does not hold; every case's outcome is in <out.json>.
import {execFileSync} from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import {pathToFileURL} from 'node:url';

const [loaderPath, outPath, ...rest] = process.argv.slice(2);
const flag = name => {
  const i = rest.indexOf(name);
  return i >= 0 ? rest[i + 1] : undefined;
};
if (!loaderPath || !outPath || !flag('--big') || !flag('--small')) {
  console.error('usage: node bad-input.mjs <native/index.js> <out.json> --big <model.gguf> --small <model.gguf> [--f16 <model.gguf>]');
  process.exit(2);
}
const binding = await import(pathToFileURL(path.resolve(loaderPath)).href);
const log = (...a) => console.log('[bad-input]', ...a);
const cases = [];
const check = (name, ok, detail) => {
  cases.push({name, ok, ...detail});
  log(`${ok ? 'ok  ' : 'FAIL'} ${name}: ${JSON.stringify(detail)}`);
};

/** This process's GPU memory from the driver (MiB), 0 while it has no context there. */
function processMiB() {
  const rows = execFileSync('nvidia-smi', ['--query-compute-apps=pid,used_memory', '--format=csv,noheader,nounits'], {encoding: 'utf8'}).trim().split('\n');
  const row = rows.map(r => r.split(',').map(s => s.trim())).find(([pid]) => Number(pid) === process.pid);
  return row ? Number(row[1]) : 0;
}

async function load(options) {
  const t = performance.now();
  const model = await binding.Model.load({device: 'cuda:0', ...options});
  return {model, ms: performance.now() - t};
}

function generate(model, tokens, maxTokens) {
  return new Promise(resolve => {
    const started = model.generate({tokens, maxTokens, temperature: 0}, event => {
      if (event.kind === 'done') resolve({result: event.result});
      else if (event.kind === 'error') resolve({error: event.error});
    });
    if (started && started.code) resolve({error: started});
  });
}

// 1. A context the card cannot hold. A small model loaded and closed first gives the process its
//    CUDA context, so what is measured after the refusal is only what the refusal left.
{
  const warm = await load({path: flag('--small'), contextSize: 256});
  if (warm.model instanceof binding.Model) warm.model.close();
  const before = processMiB();
  // 64 slots of 32,768 positions: within the model's limits (4x the 8,192 it was trained for), a
  // KV cache no card holds.
  const {model, ms} = await load({path: flag('--big'), contextSize: 32768, parallel: 64, forward: 'graph'});
  const after = processMiB();
  const refused = !(model instanceof binding.Model);
  if (!refused) model.close();
  check('a KV cache larger than the card', refused && model.code === 'insufficient_vram' && ms < 5000 && after <= before + 64, {
    code: model.code ?? null,
    message: model.message ?? null,
    ms: Math.round(ms),
    processMiBBefore: before,
    processMiBAfter: after,
  });
}

// 2. A prompt longer than the context the model was loaded with.
{
  const {model} = await load({path: flag('--small'), contextSize: 256, forward: 'graph'});
  if (!(model instanceof binding.Model)) {
    check('a prompt beyond the context', false, {load: `${model.code}: ${model.message}`});
  } else {
    const long = Array.from({length: 300}, (_, i) => 1000 + i);
    const refused = await generate(model, long, 4);
    const after = await generate(model, long.slice(0, 16), 4);
    check(
      'a prompt beyond the context',
      refused.error?.code === 'prompt_too_long' && /256/.test(refused.error.message) && (after.result?.tokens.length ?? 0) > 0,
      {code: refused.error?.code ?? null, message: refused.error?.message ?? null, answersAfter: after.result?.tokens.length ?? after.error},
    );
    model.close();
  }
}

// 3. A quantization type the graph path has no kernel for.
if (flag('--f16')) {
  const asked = await load({path: flag('--f16'), contextSize: 256, forward: 'graph'});
  const refused = !(asked.model instanceof binding.Model);
  if (!refused) asked.model.close();
  check('graph path asked for, a type without a kernel', refused && /f16/i.test(asked.model.message ?? ''), {
    code: asked.model.code ?? null,
    message: asked.model.message ?? null,
  });
  const chosen = await load({path: flag('--f16'), contextSize: 256});
  const loaded = chosen.model instanceof binding.Model;
  const answer = loaded ? await generate(chosen.model, [1, 1000, 1001], 4) : null;
  check('no path asked for, a type without a kernel', loaded && chosen.model.info.forward === 'tensor' && (answer.result?.tokens.length ?? 0) > 0, {
    forward: loaded ? chosen.model.info.forward : null,
    error: loaded ? (answer.error ?? null) : `${chosen.model.code}: ${chosen.model.message}`,
  });
  if (loaded) chosen.model.close();
}

fs.writeFileSync(outPath, `${JSON.stringify({cases}, null, 1)}\n`);
const failed = cases.filter(c => !c.ok).length;
log(`${cases.length - failed}/${cases.length} cases hold`);
process.exit(failed === 0 ? 0 : 1);
