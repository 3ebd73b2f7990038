/**
 * Greedy decoding of the candle engine against llama.cpp on a machine where llama.cpp's tokens
 * cannot be produced in the same process (a GPU machine without node-llama-cpp): the reference is
 * recorded beforehand with node-llama-cpp on CPU, then compared on the device.
 *
 *   node --import tsx bench/candle-agreement.ts --record ref.json [--model M] [--tokens 32]
 *   node candle-agreement.mjs --reference ref.json --model M --device cuda:0 [--out dir]
 *
 * The comparison also loads the model on the CPU in the same run, so the GPU's tokens are set
 * against both llama.cpp's and the candle engine's own CPU path.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import {parseArgs} from 'node:util';
import {agreement, agreementPrompts} from './lib/agreement-prompts.js';
import {llamaCppGreedy} from './lib/llama-cpp-reference.js';
import {hashFile} from '../src/models/download.js';
import {loadNativeModel} from '../src/native/index.js';

type Reference = {model_sha256: string; engine: string; max_tokens: number; prompts: Array<{prompt: string; prompt_tokens: number[]; tokens: number[]}>};

async function record(modelPath: string, maxTokens: number, out: string): Promise<void> {
  const recorded = await llamaCppGreedy(modelPath, agreementPrompts, maxTokens);
  const reference: Reference = {
    model_sha256: await hashFile(modelPath),
    engine: 'node-llama-cpp 3.21.1, CPU, greedy',
    max_tokens: maxTokens,
    prompts: recorded.map(entry => ({prompt: entry.prompt, prompt_tokens: entry.promptTokens, tokens: entry.tokens})),
  };
  fs.writeFileSync(out, `${JSON.stringify(reference, null, 1)}\n`);
  console.log(`recorded ${recorded.length} prompts x ${maxTokens} tokens to ${out}`);
}

async function compare(modelPath: string, device: string, referenceFile: string, outDir: string | undefined): Promise<boolean> {
  const reference = JSON.parse(fs.readFileSync(referenceFile, 'utf8')) as Reference;
  if ((await hashFile(modelPath)) !== reference.model_sha256) {
    throw new Error(`${modelPath} is not the model the reference was recorded with (sha256 ${reference.model_sha256})`);
  }
  const report: string[] = [];
  const rows: unknown[] = [];
  let allAgree = true;
  for (const target of [device, 'cpu']) {
    const model = await loadNativeModel({path: modelPath, device: target, contextSize: 2048});
    try {
      let agreedTotal = 0;
      let lengthTotal = 0;
      for (const [index, expected] of reference.prompts.entries()) {
        const promptTokens = model.tokenize(expected.prompt);
        const samePrompt = JSON.stringify(promptTokens) === JSON.stringify(expected.prompt_tokens);
        const result = await model.generate({prompt: expected.prompt, maxTokens: reference.max_tokens, temperature: 0});
        const {agreed, length, firstDivergence} = agreement(result.tokens, expected.tokens);
        agreedTotal += agreed;
        lengthTotal += length;
        allAgree &&= samePrompt && agreed / length >= 0.9;
        rows.push({
          device: target,
          prompt: index,
          prompt_tokens_match: samePrompt,
          agreed,
          length,
          first_divergence: firstDivergence ?? null,
          tokens: result.tokens,
        });
        report.push(
          `${target} prompt ${index} (${promptTokens.length} tokens${samePrompt ? '' : ', PROMPT TOKENS DIFFER'}): ${agreed}/${length} agree with llama.cpp${firstDivergence === undefined ? '' : `, first divergence at ${firstDivergence}`}`,
        );
      }
      report.push(`${target} (${model.info.device}): ${agreedTotal}/${lengthTotal} positions agree overall`);
    } finally {
      model.close();
    }
  }
  console.log(report.join('\n'));
  if (outDir !== undefined) {
    fs.mkdirSync(outDir, {recursive: true});
    fs.writeFileSync(
      path.join(outDir, 'candle-agreement.json'),
      `${JSON.stringify({reference: reference.engine, model: path.basename(modelPath), rows}, null, 1)}\n`,
    );
  }
  return allAgree;
}

const {values} = parseArgs({
  options: {
    record: {type: 'string'},
    reference: {type: 'string'},
    model: {type: 'string'},
    device: {type: 'string', default: 'cuda:0'},
    tokens: {type: 'string', default: '32'},
    out: {type: 'string'},
  },
});

const modelPath = values.model ?? path.join(os.homedir(), '.cache', 'rbee', 'models', 'default', 'gemma-3-270m-q4_k_m.gguf');
if (values.record !== undefined) {
  await record(modelPath, Number(values.tokens), values.record);
} else if (values.reference !== undefined) {
  process.exitCode = (await compare(modelPath, values.device, values.reference, values.out)) ? 0 : 1;
} else {
  console.error('candle-agreement: give --record <file> (here, with node-llama-cpp) or --reference <file> (on the device)');
  process.exitCode = 2;
}
