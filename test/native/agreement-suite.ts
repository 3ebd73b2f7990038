/**
 * The candle engine's CPU path against llama.cpp (node-llama-cpp in process, CPU, its defaults:
 * flash attention "auto"). Tiny random-weight llama/qwen2/qwen3 GGUFs: greedy tokens agree token
 * for token. The default model (Gemma 3 270M Q4_K_M): next-token choices under teacher forcing
 * (see `holdToReference` for why not token for token, and what must hold).
 *
 * What is compared is named in every title: llama.cpp ships one CPU build per instruction-set
 * level and loads the best one the CPU runs, and their float arithmetic differs (vector widths of
 * the f16 dot products and softmax sums, two expf approximations). The engine follows the level
 * of the build llama.cpp loads on this CPU (`ggmlSimdLevel`); to prove the other level on the same
 * machine, a test file pins both sides to llama.cpp's AVX2 build (haswell): the engine through
 * RBEE_CANDLE_GGML_SIMD, node-llama-cpp through a staged copy holding only that build.
 */
import type {ExecutionContext} from 'ava';
import type {Token} from 'node-llama-cpp';
import {agreementPrompts} from '../../bench/lib/agreement-prompts.js';
import {cachedTeacherReference} from '../../bench/lib/cached-teacher-reference.js';
import {referenceLlama} from '../../bench/lib/llama-cpp-reference.js';
import {loadNativeModel, nativeGgmlSimdLevel} from '../../src/native/index.js';
import {defaultModelPath} from '../helpers/test-model.js';
import {nativeTest} from './native-helpers.js';
import {writeTinyGguf, type TinyArch} from './tiny-gguf.js';

/** llama.cpp's CPU builds with AVX-512; every other x86 build it can load here has AVX2 at most. */
const avx512Builds = new Set(['skylakex', 'cannonlake', 'cascadelake', 'icelake', 'cooperlake', 'zen4', 'sapphirerapids']);

export function simdLevelOf(cpuVariant: string): 'avx512' | 'avx2' {
  return avx512Builds.has(cpuVariant) ? 'avx512' : 'avx2';
}

/**
 * The tests, against llama.cpp's CPU build `cpuVariant` (undefined: the one it loads here). The
 * engine's level must already be set (RBEE_CANDLE_GGML_SIMD) by the calling file when pinned.
 */
export async function agreementSuite(cpuVariant?: string): Promise<void> {
  const {serial} = await nativeTest();
  const against = cpuVariant === undefined ? "llama.cpp's CPU build for this CPU" : `llama.cpp's ${cpuVariant} CPU build`;

  serial(`the engine follows the SIMD level of ${against}`, async t => {
    const {llama, cpuVariant: loaded} = await referenceLlama(cpuVariant === undefined ? {} : {cpuVariant});
    await llama.dispose();
    const level = await nativeGgmlSimdLevel();
    t.log(`llama.cpp loaded its ${loaded} build; the engine follows ${level}`);
    t.is(level, simdLevelOf(loaded));
  });

  /**
   * Teacher forcing on llama.cpp's greedy tokens: before each of them, the engine's most probable
   * next token against llama.cpp's distribution. Not greedy token for token: on this small Q4_K
   * model the last bits of one float sum move probabilities by tenths (two of llama.cpp's own CPU
   * builds disagree with each other at several positions in 128), so a free greedy run parts at the
   * first near-tie and says nothing after it. What must hold: the engine's choice is llama.cpp's at
   * 90 % of positions or more, and where it is not, llama.cpp gives the engine's choice at least an
   * eighth of the probability of its own (measured: 0.147 against 0.845 at worst, on a Zen 4 with
   * its zen4 build; see `SimdLevel::current` in native/src/ggml_math.rs).
   */
  const plausible = 1 / 8;
  const holdToReference = async (t: ExecutionContext, prompts: readonly string[], maxTokens: number) => {
    // Two engines over hundreds of positions: minutes on a loaded 2-core machine, past ava's 3 min of silence.
    t.timeout(20 * 60_000, 'teacher forcing against llama.cpp');
    const modelPath = await defaultModelPath();
    // llama.cpp's answer for this model, build and prompts is the same every run: computed once per machine.
    const reference = await cachedTeacherReference(modelPath, prompts, maxTokens, cpuVariant === undefined ? {} : {cpuVariant});
    t.log(`llama.cpp's ${reference.cpuVariant} build: reference ${reference.source}`);
    const model = await loadNativeModel({path: modelPath, contextSize: 2048, threads: 2});
    let agreed = 0;
    let positions = 0;
    try {
      for (const [index, expected] of reference.entries()) {
        t.deepEqual(model.tokenize(expected.prompt), expected.promptTokens, `prompt ${index}: the same prompt tokens (BOS included)`);
        const distributions = await model.nextTokenProbabilities(expected.promptTokens, expected.tokens, 2);
        const parted: string[] = [];
        for (const [position, ours] of distributions.entries()) {
          const theirs = expected.distributions[position]!;
          positions++;
          if (ours[0]!.token === theirs[0]!.token) {
            agreed++;
            continue;
          }
          const given = theirs.find(p => p.token === ours[0]!.token)?.probability ?? 0;
          parted.push(`${position} (llama.cpp ${theirs.slice(0, 3).map(p => `${p.token}:${p.probability.toFixed(3)}`).join(' ')}; engine ${ours.map(p => `${p.token}:${p.probability.toFixed(3)}`).join(' ')})`);
          t.true(given >= plausible * theirs[0]!.probability, `prompt ${index} position ${position}: the engine chose ${ours[0]!.token}, to which llama.cpp gives ${given.toFixed(3)} against ${theirs[0]!.probability.toFixed(3)} for its ${theirs[0]!.token}`);
        }
        t.log(`prompt ${index} (${expected.promptTokens.length} tokens): ${distributions.length - parted.length}/${distributions.length} choices agree${parted.length === 0 ? '' : `; parted at ${parted.join(', ')}`}`);
      }
    } finally {
      model.close();
    }
    t.log(`overall: ${agreed}/${positions} choices agree with llama.cpp's ${reference.cpuVariant} build`);
    t.true(agreed >= 0.9 * positions, `${agreed}/${positions} choices agree with llama.cpp's ${reference.cpuVariant} build (90 % needed)`);
  };

  serial(`the default model's next-token choices agree with ${against} at 90 % of teacher-forced positions, and are plausible to it at every one (4 prompts x 32)`, async t => {
    await holdToReference(t, agreementPrompts, 32);
  });

  serial(`the default model's choices agree with ${against} past 256 cached tokens (its split decode kernel; 300 tokens)`, async t => {
    await holdToReference(t, ['List of countries and their capitals:\n'], 300);
  });

  const prompts = ['the cat sat on the mat', 'in the beginning there was a'];
  const maxTokens = 16;
  for (const arch of ['llama', 'qwen2', 'qwen3'] as TinyArch[]) {
    serial(`${arch}: prompt tokens and greedy tokens agree with ${against} on a tiny random model`, async t => {
      const file = writeTinyGguf(arch);
      const {llama} = await referenceLlama(cpuVariant === undefined ? {} : {cpuVariant});
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
}
