/**
 * llama.cpp's greedy tokens for some prompts, from node-llama-cpp on the CPU (in this process):
 * the reference the candle engine's tokens are held to, by the correctness tests and by
 * bench/candle-agreement.ts. node-llama-cpp is imported only when called, so a bundle that never
 * records runs without it. `cpuVariant` picks one of llama.cpp's CPU builds instead of the one
 * this CPU would load (see llama-cpp-cpu-variant.ts); the answer names the build that ran.
 */
import {importNodeLlamaCpp, loadedCpuVariant} from './llama-cpp-cpu-variant.js';

export type GreedyReference = {prompt: string; promptTokens: number[]; tokens: number[]};

/** ggml names the CPU build only when it first loads it: later getLlama calls of this process reuse it. */
let cpuVariantOfThisProcess: string | undefined;

/** A node-llama-cpp on the CPU, and the CPU build it loaded (from its log). */
export async function referenceLlama(options: {cpuVariant?: string} = {}) {
  const {getLlama, LlamaLogLevel} = await importNodeLlamaCpp(options.cpuVariant);
  const lines: string[] = [];
  const llama = await getLlama({
    gpu: false,
    build: 'never',
    // ggml names the CPU build it loaded at the `log` level, after getLlama has resolved.
    logLevel: LlamaLogLevel.log,
    progressLogs: false,
    // Info lines are read for the CPU build's name; only errors are shown.
    logger: (level, message) => {
      lines.push(message);
      if (level === LlamaLogLevel.error || level === LlamaLogLevel.fatal) {
        process.stderr.write(`${message}\n`);
      }
    },
  });
  const deadline = Date.now() + 10_000;
  while (cpuVariantOfThisProcess === undefined && loadedCpuVariant(lines) === undefined && Date.now() < deadline) {
    await new Promise(resolve => setTimeout(resolve, 20));
  }
  cpuVariantOfThisProcess ??= loadedCpuVariant(lines);
  const cpuVariant = cpuVariantOfThisProcess;
  if (options.cpuVariant !== undefined && cpuVariant !== options.cpuVariant) {
    await llama.dispose();
    throw new Error(`asked for llama.cpp's ${options.cpuVariant} CPU build, but ${cpuVariant ?? 'an unnamed one'} was loaded`);
  }
  return {llama, cpuVariant: cpuVariant ?? 'unknown'};
}

type ReferenceModel = Awaited<ReturnType<Awaited<ReturnType<typeof referenceLlama>>['llama']['loadModel']>>;
type ReferenceSequence = ReturnType<Awaited<ReturnType<ReferenceModel['createContext']>>['getSequence']>;

/** `model` loaded on llama.cpp's CPU build, one context sequence (2048 tokens, 2 threads) for `use`, everything freed after. */
async function withReferenceSequence<T>(
  modelPath: string,
  options: {cpuVariant?: string},
  use: (model: ReferenceModel, sequence: ReferenceSequence) => Promise<T>,
): Promise<T & {cpuVariant: string}> {
  const {llama, cpuVariant} = await referenceLlama(options);
  try {
    const model = await llama.loadModel({modelPath});
    const context = await model.createContext({contextSize: 2048, threads: 2});
    const result = await use(model, context.getSequence());
    await context.dispose();
    await model.dispose();
    return Object.assign(result as T & object, {cpuVariant}) as T & {cpuVariant: string};
  } finally {
    await llama.dispose();
  }
}

export async function llamaCppGreedy(
  modelPath: string,
  prompts: readonly string[],
  maxTokens: number,
  options: {cpuVariant?: string} = {},
): Promise<GreedyReference[] & {cpuVariant: string}> {
  const {LlamaCompletion} = await importNodeLlamaCpp(options.cpuVariant);
  return withReferenceSequence(modelPath, options, async (model, sequence) => {
    const references: GreedyReference[] = [];
    for (const prompt of prompts) {
      await sequence.clearHistory();
      const completion = new LlamaCompletion({contextSequence: sequence, autoDisposeSequence: false});
      const tokens: number[] = [];
      await completion.generateCompletion(prompt, {maxTokens, temperature: 0, onToken: chunk => tokens.push(...chunk)});
      completion.dispose({disposeSequence: false});
      references.push({prompt, promptTokens: [model.tokens.bos!, ...model.tokenize(prompt, false)], tokens});
    }
    return references;
  });
}

/** One next-token distribution: the most probable tokens, most probable first. */
export type TopProbabilities = {token: number; probability: number}[];

export type TeacherReference = GreedyReference & {
  /** Before each greedy token, llama.cpp's most probable next tokens (softmax at temperature 1). */
  distributions: TopProbabilities[];
};

/**
 * Greedy decoding one token at a time through `controlledEvaluate`, keeping llama.cpp's whole
 * next-token distribution (temperature 1, no truncation) at every step: the prompt is evaluated in
 * one batch and every generated token alone, as llama.cpp's own generation does. The greedy token
 * is the distribution's most probable one; the lower token id wins an exact tie.
 */
export async function llamaCppTeacherReference(
  modelPath: string,
  prompts: readonly string[],
  maxTokens: number,
  options: {cpuVariant?: string; top?: number} = {},
): Promise<TeacherReference[] & {cpuVariant: string}> {
  const top = options.top ?? 8;
  return withReferenceSequence(modelPath, options, async (model, sequence) => {
    const references: TeacherReference[] = [];
    const next = {probabilities: true, options: {temperature: 1, topK: 0, topP: 1, minP: 0}} as const;
    for (const prompt of prompts) {
      await sequence.clearHistory();
      const promptTokens = [model.tokens.bos!, ...model.tokenize(prompt, false)];
      const tokens: number[] = [];
      const distributions: TopProbabilities[] = [];
      let input: Parameters<typeof sequence.controlledEvaluate>[0] = [...promptTokens.slice(0, -1), [promptTokens.at(-1)!, {generateNext: next}]];
      while (tokens.length < maxTokens) {
        const output = await sequence.controlledEvaluate(input);
        const probabilities = output.at(-1)?.next.probabilities;
        if (probabilities === undefined) {
          throw new Error('llama.cpp gave no next-token probabilities');
        }
        // node-llama-cpp gives the map already ordered, most probable first.
        const ranked: TopProbabilities = [];
        for (const [token, probability] of probabilities) {
          if (ranked.length === top) {
            break;
          }
          ranked.push({token: Number(token), probability});
        }
        ranked.sort((a, b) => b.probability - a.probability || a.token - b.token);
        const token = ranked[0]!.token;
        if (model.isEogToken(token as never)) {
          break;
        }
        distributions.push(ranked);
        tokens.push(token);
        input = [[token as never, {generateNext: next}]];
      }
      references.push({prompt, promptTokens, tokens, distributions});
    }
    return references;
  });
}
