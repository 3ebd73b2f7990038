/**
 * llama.cpp in the worker process through node-llama-cpp: the embedded default engine. One
 * context with `parallel` sequences; node-llama-cpp batches the sequences that generate at once.
 */
import os from 'node:os';
import type {ChatHistoryItem, LlamaContext, LlamaContextSequence, LlamaModel, Llama} from 'node-llama-cpp';
import {RbeeError} from '../../errors.js';
import type {Engine, EngineChatMessage, EngineLoadOptions, EngineMemory, GenerateOptions, GenerateResult} from '../engine.js';
import type {FinishReason} from '../../protocol/wire.js';

type StopReason = 'eogToken' | 'stopGenerationTrigger' | 'functionCalls' | 'maxTokens' | 'abort' | 'customStopTrigger';

function finishReasonOf(stopReason: StopReason): FinishReason {
  if (stopReason === 'maxTokens') {
    return 'length';
  }
  return stopReason === 'abort' ? 'cancelled' : 'stop';
}

function gpuOf(device: string): false | 'cuda' | 'metal' {
  if (device === 'cpu') {
    return false;
  }
  if (device === 'metal') {
    return 'metal';
  }
  if (/^cuda:\d+$/.test(device)) {
    return 'cuda';
  }
  throw new RbeeError('device_unknown', `unknown device "${device}": expected cpu, metal or cuda:N`);
}

/**
 * Physical cores, not logical ones: llama.cpp's threads spin while they wait, so
 * oversubscribing the cores makes decoding many times slower, not faster.
 */
function defaultThreads(llama: Llama): number {
  return Math.max(1, Math.min(llama.cpuMathCores, os.availableParallelism()));
}

function toHistory(messages: EngineChatMessage[]): ChatHistoryItem[] {
  const history: ChatHistoryItem[] = [];
  for (const message of messages) {
    if (message.role === 'assistant') {
      history.push({type: 'model', response: [message.content]});
    } else {
      history.push({type: message.role, text: message.content});
    }
  }
  history.push({type: 'model', response: []});
  return history;
}

class LlamaCppEmbeddedEngine implements Engine {
  readonly adapterType = 'llama.cpp';
  readonly backend: string;
  readonly threads: number | undefined;
  readonly parallel: number;
  readonly contextSize: number;
  readonly #llama: Llama;
  readonly #model: LlamaModel;
  readonly #context: LlamaContext;
  readonly #freeSequences: LlamaContextSequence[] = [];
  readonly #nodeLlamaCpp: typeof import('node-llama-cpp');

  constructor(parts: {nodeLlamaCpp: typeof import('node-llama-cpp'); llama: Llama; model: LlamaModel; context: LlamaContext; threads: number; parallel: number}) {
    this.#nodeLlamaCpp = parts.nodeLlamaCpp;
    this.#llama = parts.llama;
    this.#model = parts.model;
    this.#context = parts.context;
    this.backend = parts.llama.gpu === false ? 'cpu' : parts.llama.gpu;
    this.threads = parts.threads;
    this.parallel = parts.parallel;
    this.contextSize = parts.context.contextSize;
    for (let index = 0; index < parts.parallel; index++) {
      this.#freeSequences.push(parts.context.getSequence());
    }
  }

  async complete(prompt: string, options: GenerateOptions): Promise<GenerateResult> {
    return this.#withSequence(async sequence => {
      const completion = new this.#nodeLlamaCpp.LlamaCompletion({contextSequence: sequence, autoDisposeSequence: false});
      try {
        const promptTokens = this.#model.tokenize(prompt).length;
        this.#checkPromptFits(promptTokens, sequence);
        let tokensGenerated = 0;
        const result = await completion.generateCompletionWithMeta(prompt, {
          ...this.#sampling(options),
          onToken: tokens => {
            tokensGenerated += tokens.length;
          },
        });
        return {text: result.response, tokensGenerated, promptTokens, finishReason: finishReasonOf(result.metadata.stopReason)};
      } finally {
        completion.dispose({disposeSequence: false});
      }
    });
  }

  async chat(messages: EngineChatMessage[], options: GenerateOptions): Promise<GenerateResult> {
    return this.#withSequence(async sequence => {
      const chat = new this.#nodeLlamaCpp.LlamaChat({contextSequence: sequence, autoDisposeSequence: false});
      try {
        let tokensGenerated = 0;
        const result = await chat.generateResponse(toHistory(messages), {
          ...this.#sampling(options),
          onToken: tokens => {
            tokensGenerated += tokens.length;
          },
        });
        const promptTokens = Math.max(0, sequence.nextTokenIndex - tokensGenerated);
        return {text: result.response, tokensGenerated, promptTokens, finishReason: finishReasonOf(result.metadata.stopReason)};
      } finally {
        chat.dispose({disposeSequence: false});
      }
    });
  }

  async memory(): Promise<EngineMemory> {
    const ramUsed = process.memoryUsage().rss;
    if (this.#llama.gpu === false) {
      return {vramUsed: 0, vramTotal: 0, ramUsed};
    }
    const vram = await this.#llama.getVramState();
    return {vramUsed: vram.used, vramTotal: vram.total, ramUsed};
  }

  async close(): Promise<void> {
    await this.#context.dispose();
    await this.#model.dispose();
    await this.#llama.dispose();
  }

  #sampling(options: GenerateOptions) {
    return {
      maxTokens: options.maxTokens,
      temperature: options.temperature,
      ...(options.topK === undefined ? {} : {topK: options.topK}),
      ...(options.topP === undefined ? {} : {topP: options.topP}),
      ...(options.seed === undefined ? {} : {seed: options.seed}),
      ...(options.stop.length === 0 ? {} : {customStopTriggers: options.stop}),
      ...(options.signal === undefined ? {} : {signal: options.signal, stopOnAbortSignal: true}),
      ...(options.onText === undefined ? {} : {onTextChunk: options.onText}),
    };
  }

  #checkPromptFits(promptTokens: number, sequence: LlamaContextSequence): void {
    if (promptTokens >= sequence.contextSize) {
      throw new RbeeError('invalid_request', `prompt is ${promptTokens} tokens; the context holds ${sequence.contextSize}`);
    }
  }

  /** The worker's request queue admits at most `parallel` requests, so a sequence is always free here. */
  async #withSequence<T>(work: (sequence: LlamaContextSequence) => Promise<T>): Promise<T> {
    const sequence = this.#freeSequences.pop();
    if (sequence === undefined) {
      throw new RbeeError('internal', 'no free context sequence: the request queue admitted too many requests');
    }
    try {
      // A fresh sequence per request keeps requests independent (and greedy decoding repeatable).
      await sequence.clearHistory();
      return await work(sequence);
    } finally {
      this.#freeSequences.push(sequence);
    }
  }
}

export async function loadLlamaCppEmbedded(options: EngineLoadOptions): Promise<Engine> {
  const gpu = gpuOf(options.device);
  const nodeLlamaCpp = await import('node-llama-cpp');
  let llama: Llama;
  try {
    llama = await nodeLlamaCpp.getLlama({
      gpu,
      build: 'never',
      logLevel: nodeLlamaCpp.LlamaLogLevel.error,
      progressLogs: false,
    });
  } catch (error) {
    throw new RbeeError('device_unknown', `device ${options.device} is not usable by llama.cpp: ${(error as Error).message}`, {cause: error});
  }
  const threads = options.threads ?? defaultThreads(llama);
  let model: LlamaModel;
  try {
    model = await llama.loadModel({
      modelPath: options.modelPath,
      gpuLayers: gpu === false ? 0 : 'max',
      ...(options.onProgress === undefined ? {} : {onLoadProgress: options.onProgress}),
    });
  } catch (error) {
    await llama.dispose();
    throw new RbeeError('engine_error', `llama.cpp could not load ${options.modelPath}: ${(error as Error).message}`, {cause: error});
  }
  try {
    const context = await model.createContext({
      contextSize: options.contextSize * options.parallel,
      sequences: options.parallel,
      threads,
    });
    return new LlamaCppEmbeddedEngine({nodeLlamaCpp, llama, model, context, threads, parallel: options.parallel});
  } catch (error) {
    await model.dispose();
    await llama.dispose();
    throw new RbeeError('engine_error', `llama.cpp could not create a context of ${options.contextSize} tokens: ${(error as Error).message}`, {cause: error});
  }
}
