/**
 * llama.cpp in the worker process through node-llama-cpp: the embedded engine, the default when
 * no llama-server binary is configured. One context with `parallel` sequences; node-llama-cpp
 * batches the sequences that generate at once.
 */
import os from 'node:os';
import type {ChatHistoryItem, Llama, LlamaContext, LlamaContextSequence, LlamaModel} from 'node-llama-cpp';
import {RbeeError, type AdapterContext, type AdapterHeartbeat, type AdapterInferRequest, type EngineChatMessage, type GenerateResult} from 'rbee';

type StopReason = 'eogToken' | 'stopGenerationTrigger' | 'functionCalls' | 'maxTokens' | 'abort' | 'customStopTrigger';

function finishReasonOf(stopReason: StopReason): GenerateResult['finishReason'] {
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
  const history: ChatHistoryItem[] = messages.map(message =>
    message.role === 'assistant' ? {type: 'model', response: [message.content]} : {type: message.role, text: message.content},
  );
  history.push({type: 'model', response: []});
  return history;
}

export class EmbeddedLlamaCpp {
  readonly #nodeLlamaCpp: typeof import('node-llama-cpp');
  readonly #llama: Llama;
  readonly #model: LlamaModel;
  readonly #context: LlamaContext;
  readonly #threads: number;
  readonly #freeSequences: LlamaContextSequence[] = [];

  private constructor(parts: {
    nodeLlamaCpp: typeof import('node-llama-cpp');
    llama: Llama;
    model: LlamaModel;
    context: LlamaContext;
    threads: number;
    parallel: number;
  }) {
    this.#nodeLlamaCpp = parts.nodeLlamaCpp;
    this.#llama = parts.llama;
    this.#model = parts.model;
    this.#context = parts.context;
    this.#threads = parts.threads;
    for (let index = 0; index < parts.parallel; index++) {
      this.#freeSequences.push(parts.context.getSequence());
    }
  }

  static async load(context: AdapterContext): Promise<EmbeddedLlamaCpp> {
    const gpu = gpuOf(context.device);
    const nodeLlamaCpp = await import('node-llama-cpp');
    let llama: Llama;
    try {
      llama = await nodeLlamaCpp.getLlama({gpu, build: 'never', logLevel: nodeLlamaCpp.LlamaLogLevel.error, progressLogs: false});
    } catch (error) {
      throw new RbeeError('device_unknown', `device ${context.device} is not usable by llama.cpp: ${(error as Error).message}`, {cause: error});
    }
    const threads = context.threads ?? defaultThreads(llama);
    let model: LlamaModel;
    try {
      model = await llama.loadModel({
        modelPath: context.modelPath,
        gpuLayers: gpu === false ? 0 : 'max',
        onLoadProgress: progress => context.reportLoadProgress(progress),
      });
    } catch (error) {
      await llama.dispose();
      throw new RbeeError('engine_error', `llama.cpp could not load ${context.modelPath}: ${(error as Error).message}`, {cause: error});
    }
    try {
      const llamaContext = await model.createContext({
        contextSize: context.contextSize * context.parallel,
        sequences: context.parallel,
        threads,
      });
      return new EmbeddedLlamaCpp({nodeLlamaCpp, llama, model, context: llamaContext, threads, parallel: context.parallel});
    } catch (error) {
      await model.dispose();
      await llama.dispose();
      throw new RbeeError('engine_error', `llama.cpp could not create a context of ${context.contextSize} tokens: ${(error as Error).message}`, {cause: error});
    }
  }

  /** Tokens of a prompt (of a chat's message texts, without the template's few). */
  async countTokens(prompt: Pick<AdapterInferRequest, 'kind' | 'prompt' | 'messages'>): Promise<number> {
    const text = prompt.kind === 'chat' ? prompt.messages.map(message => message.content).join('\n') : prompt.prompt;
    return this.#model.tokenize(text).length;
  }

  async infer(request: AdapterInferRequest): Promise<GenerateResult> {
    return this.#withSequence(async sequence => (request.kind === 'chat' ? this.#chat(sequence, request) : this.#complete(sequence, request)));
  }

  async heartbeat(): Promise<AdapterHeartbeat> {
    const backend = this.#llama.gpu === false ? 'cpu' : this.#llama.gpu;
    const ramUsed = process.memoryUsage().rss;
    if (this.#llama.gpu === false) {
      return {backend, threads: this.#threads, vram_used: 0, vram_total: 0, ram_used: ramUsed};
    }
    const vram = await this.#llama.getVramState();
    return {backend, threads: this.#threads, vram_used: vram.used, vram_total: vram.total, ram_used: ramUsed};
  }

  async close(): Promise<void> {
    await this.#context.dispose();
    await this.#model.dispose();
    await this.#llama.dispose();
  }

  async #complete(sequence: LlamaContextSequence, request: AdapterInferRequest): Promise<GenerateResult> {
    const completion = new this.#nodeLlamaCpp.LlamaCompletion({contextSequence: sequence, autoDisposeSequence: false});
    try {
      const promptTokens = this.#model.tokenize(request.prompt).length;
      if (promptTokens >= sequence.contextSize) {
        throw new RbeeError('invalid_request', `prompt is ${promptTokens} tokens; the context holds ${sequence.contextSize}`);
      }
      let tokensGenerated = 0;
      const result = await completion.generateCompletionWithMeta(request.prompt, {
        ...this.#sampling(request),
        onToken: tokens => {
          tokensGenerated += tokens.length;
        },
      });
      return {text: result.response, tokensGenerated, promptTokens, finishReason: finishReasonOf(result.metadata.stopReason)};
    } finally {
      completion.dispose({disposeSequence: false});
    }
  }

  async #chat(sequence: LlamaContextSequence, request: AdapterInferRequest): Promise<GenerateResult> {
    const chat = new this.#nodeLlamaCpp.LlamaChat({contextSequence: sequence, autoDisposeSequence: false});
    try {
      let tokensGenerated = 0;
      const result = await chat.generateResponse(toHistory(request.messages), {
        ...this.#sampling(request),
        onToken: tokens => {
          tokensGenerated += tokens.length;
        },
      });
      const promptTokens = Math.max(0, sequence.nextTokenIndex - tokensGenerated);
      return {text: result.response, tokensGenerated, promptTokens, finishReason: finishReasonOf(result.metadata.stopReason)};
    } finally {
      chat.dispose({disposeSequence: false});
    }
  }

  #sampling(request: AdapterInferRequest) {
    return {
      maxTokens: request.maxTokens,
      temperature: request.temperature,
      ...(request.topK === undefined ? {} : {topK: request.topK}),
      ...(request.topP === undefined ? {} : {topP: request.topP}),
      ...(request.seed === undefined ? {} : {seed: request.seed}),
      ...(request.stop.length === 0 ? {} : {customStopTriggers: request.stop}),
      signal: request.signal,
      stopOnAbortSignal: true,
      onTextChunk: request.onText,
    };
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
