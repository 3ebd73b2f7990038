/**
 * Token for token against llama.cpp: greedy decoding of the default model (Gemma 3 270M Q4_K_M)
 * by node-llama-cpp (in process, CPU, its defaults: flash attention "auto") and by the candle
 * engine, on four prompts, 32 tokens each. The candle engine follows ggml's CPU kernels (the
 * quantized dot products, flash attention's f16 accumulation, the f16 GELU table ...), so the
 * tokens should agree exactly; where float differences part them the test logs the first
 * divergence and still requires 90% of the positions to agree.
 */
import {agreement, agreementPrompts} from '../../bench/lib/agreement-prompts.js';
import {llamaCppGreedy} from '../../bench/lib/llama-cpp-reference.js';
import {loadNativeModel} from '../../src/native/index.js';
import {defaultModelPath} from '../helpers/test-model.js';
import {nativeTest} from './native-helpers.js';

const {serial} = await nativeTest();

const prompts = agreementPrompts;
const maxTokens = 32;

serial('greedy decoding matches llama.cpp token for token on the default model', async t => {
  const modelPath = await defaultModelPath();

  const reference = await llamaCppGreedy(modelPath, prompts, maxTokens);

  const model = await loadNativeModel({path: modelPath, contextSize: 2048, threads: 2});
  try {
    let agreedOverall = 0;
    let totalOverall = 0;
    for (const [index, prompt] of prompts.entries()) {
      const expected = reference[index]!;
      t.deepEqual(model.tokenize(prompt), expected.promptTokens, `prompt ${index}: the same prompt tokens (BOS included)`);
      const result = await model.generate({prompt, maxTokens, temperature: 0});
      const {agreed, length, firstDivergence} = agreement(result.tokens, expected.tokens);
      agreedOverall += agreed;
      totalOverall += length;
      t.log(`prompt ${index} (${expected.promptTokens.length} tokens): ${agreed}/${length} positions agree${firstDivergence === undefined ? '' : `, first divergence at ${firstDivergence}`}`);
      t.true(length >= 1);
      t.true(agreed / length >= 0.9, `prompt ${index}: ${agreed}/${length} agree (first divergence at ${firstDivergence})\ncandle:    ${result.tokens.join(',')}\nllama.cpp: ${expected.tokens.join(',')}`);
    }
    t.log(`overall: ${agreedOverall}/${totalOverall} positions agree`);
  } finally {
    model.close();
  }
});

serial('a long greedy generation stays with llama.cpp past 256 cached tokens (its split decode kernel)', async t => {
  const modelPath = await defaultModelPath();
  const prompt = 'List of countries and their capitals:\n';
  const length = 300;
  const expected = (await llamaCppGreedy(modelPath, [prompt], length))[0]!.tokens;
  const model = await loadNativeModel({path: modelPath, contextSize: 2048, threads: 2});
  try {
    const result = await model.generate({prompt, maxTokens: length, temperature: 0});
    const firstDivergence = expected.findIndex((token, i) => result.tokens[i] !== token);
    const agreed = expected.filter((token, i) => result.tokens[i] === token).length;
    t.log(`${agreed}/${expected.length} positions agree${firstDivergence === -1 ? '' : `, first divergence at ${firstDivergence}`}`);
    t.true(agreed / expected.length >= 0.9, `first divergence at ${firstDivergence}`);
  } finally {
    model.close();
  }
});
