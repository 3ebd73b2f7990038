/**
 * The CPU peer: llama.cpp through node-llama-cpp, in this process (as rbee's embedded llamacpp
 * engine runs it), on the same GGUF, thread count and context size as the candle side, evaluating
 * the same prompt token ids greedily. node-llama-cpp is imported only here and only when this peer
 * is chosen, so the bundled benchmark runs where it is not installed.
 *
 * Timed in JavaScript around `sequence.evaluate`: the request, the first yielded token, the last.
 * The end-of-generation token is yielded and decoding goes on (`yieldEogToken`), so every sample
 * decodes the full count.
 */
import type {Token} from 'node-llama-cpp';
import {ownCpuSeconds} from './proc-cpu.js';
import {speedFromInstants, type SpeedEngine, type SpeedMeasurement} from './speed-engine.js';

export type NodeLlamaCppSide = SpeedEngine & {readonly lastTokens: number[]};

export async function startNodeLlamaCppSide(options: {
  modelPath: string;
  threads: number;
  contextSize: number;
  prompt: readonly number[];
  decodeTokens: number;
}): Promise<NodeLlamaCppSide> {
  const {getLlama, LlamaLogLevel} = await import('node-llama-cpp');
  // maxThreads 0: the context's `threads` is then the number actually used, never capped by a guess of the machine's cores.
  const llama = await getLlama({gpu: false, build: 'never', maxThreads: 0, logLevel: LlamaLogLevel.error, progressLogs: false});
  const model = await llama.loadModel({modelPath: options.modelPath, gpuLayers: 0});
  const context = await model.createContext({contextSize: options.contextSize, sequences: 1, threads: options.threads});
  const sequence = context.getSequence();
  const prompt = options.prompt as Token[];
  let lastTokens: number[] = [];
  return {
    name: 'node-llama-cpp',
    get lastTokens() {
      return lastTokens;
    },
    description: {
      engine: 'llama.cpp through node-llama-cpp, in process',
      llama_cpp_release: llama.llamaCppRelease,
      build_type: llama.buildType,
      gpu: llama.gpu,
      gpu_layers: 0,
      threads: context.currentThreads,
      context_size: context.contextSize,
      batch_size: context.batchSize,
      flash_attention: context.flashAttention,
      sampling: 'greedy (temperature 0); yieldEogToken: decodes past an end-of-generation token',
      timing: 'JavaScript performance.now(): request → first yielded token (prompt), first → last yielded token (decode)',
    },
    async measure(): Promise<SpeedMeasurement> {
      await sequence.clearHistory();
      const tokens: number[] = [];
      const cpuBefore = ownCpuSeconds();
      const began = performance.now();
      let firstAt = Number.NaN;
      let lastAt = Number.NaN;
      for await (const token of sequence.evaluate(prompt, {temperature: 0, yieldEogToken: true})) {
        lastAt = performance.now();
        if (tokens.length === 0) {
          firstAt = lastAt;
        }
        tokens.push(token);
        if (tokens.length >= options.decodeTokens) {
          break; // ends the generator: the last token is not evaluated, as in the candle engine
        }
      }
      const wallSeconds = (performance.now() - began) / 1000;
      lastTokens = tokens;
      return speedFromInstants({
        promptTokens: prompt.length,
        generated: tokens.length,
        promptMs: firstAt - began,
        decodeMs: lastAt - firstAt,
        finish: tokens.length >= options.decodeTokens ? 'length' : 'stop',
        processCores: wallSeconds > 0 ? (ownCpuSeconds() - cpuBefore) / wallSeconds : null,
      });
    },
    async close() {
      await context.dispose();
      await model.dispose();
      await llama.dispose();
    },
  };
}
