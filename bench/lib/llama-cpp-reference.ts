/**
 * llama.cpp's greedy tokens for some prompts, from node-llama-cpp on the CPU (in this process):
 * the reference the candle engine's tokens are held to, by the correctness test and by
 * bench/candle-agreement.ts. node-llama-cpp is imported only when called, so a bundle that never
 * records runs without it.
 */
export type GreedyReference = {prompt: string; promptTokens: number[]; tokens: number[]};

export async function llamaCppGreedy(modelPath: string, prompts: readonly string[], maxTokens: number): Promise<GreedyReference[]> {
  const {getLlama, LlamaCompletion, LlamaLogLevel} = await import('node-llama-cpp');
  const llama = await getLlama({gpu: false, build: 'never', logLevel: LlamaLogLevel.error, progressLogs: false});
  const references: GreedyReference[] = [];
  try {
    const model = await llama.loadModel({modelPath});
    const context = await model.createContext({contextSize: 2048, threads: 2});
    const sequence = context.getSequence();
    for (const prompt of prompts) {
      await sequence.clearHistory();
      const completion = new LlamaCompletion({contextSequence: sequence, autoDisposeSequence: false});
      const tokens: number[] = [];
      await completion.generateCompletion(prompt, {maxTokens, temperature: 0, onToken: chunk => tokens.push(...chunk)});
      completion.dispose({disposeSequence: false});
      references.push({prompt, promptTokens: [model.tokens.bos!, ...model.tokenize(prompt, false)], tokens});
    }
    await context.dispose();
    await model.dispose();
  } finally {
    await llama.dispose();
  }
  return references;
}
