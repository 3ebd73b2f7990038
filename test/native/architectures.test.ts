/**
 * The llama, qwen2 and qwen3 code paths against llama.cpp on tiny random-weight GGUFs written by
 * the test (no download): the same prompt tokens, and greedy decoding token for token.
 */
import {getLlama, LlamaLogLevel, type Token} from 'node-llama-cpp';
import {loadNativeModel} from '../../src/native/index.js';
import {nativeTest} from './native-helpers.js';
import {writeTinyGguf, type TinyArch} from './tiny-gguf.js';

const {serial} = await nativeTest();
const prompts = ['the cat sat on the mat', 'in the beginning there was a'];
const maxTokens = 16;

for (const arch of ['llama', 'qwen2', 'qwen3'] as TinyArch[]) {
  serial(`${arch}: prompt tokens and greedy tokens agree with llama.cpp on a tiny random model`, async t => {
    const file = writeTinyGguf(arch);
    const llama = await getLlama({gpu: false, build: 'never', logLevel: LlamaLogLevel.error, progressLogs: false});
    const expected: {prompt: number[]; tokens: number[]}[] = [];
    try {
      const model = await llama.loadModel({modelPath: file});
      const context = await model.createContext({contextSize: 512, threads: 2});
      const sequence = context.getSequence();
      for (const prompt of prompts) {
        await sequence.clearHistory();
        const tokens: Token[] = [...(model.tokens.bos !== null && model.tokens.shouldPrependBosToken ? [model.tokens.bos] : []), ...model.tokenize(prompt, false)];
        const generated: Token[] = [];
        for await (const token of sequence.evaluate(tokens, {temperature: 0})) {
          generated.push(token);
          if (generated.length >= maxTokens || model.isEogToken(token)) {
            break;
          }
        }
        expected.push({prompt: tokens.map(Number), tokens: generated.filter(token => !model.isEogToken(token)).map(Number)});
      }
      await context.dispose();
      await model.dispose();
    } finally {
      await llama.dispose();
    }

    const model = await loadNativeModel({path: file, contextSize: 512});
    try {
      t.is(model.info.architecture, arch);
      for (const [index, prompt] of prompts.entries()) {
        t.deepEqual(model.tokenize(prompt), expected[index]!.prompt, `${arch} prompt ${index} tokens`);
        const result = await model.generate({prompt, maxTokens, temperature: 0});
        const want = expected[index]!.tokens;
        const agree = want.filter((token, i) => result.tokens[i] === token).length;
        t.log(`${arch} prompt ${index}: ${agree}/${want.length} agree`);
        t.deepEqual(result.tokens.slice(0, want.length), want, `${arch} prompt ${index}`);
      }
    } finally {
      model.close();
    }
  });
}
