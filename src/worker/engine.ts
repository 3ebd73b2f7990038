/**
 * What the worker runtime needs from an inference engine. The runtime (HTTP server, heartbeat,
 * lifecycle) is shared by every worker type; an engine only loads a model and generates.
 */
import type {FinishReason} from '../protocol/wire.js';

export type GenerateOptions = {
  maxTokens: number;
  temperature: number;
  topK?: number;
  topP?: number;
  seed?: number;
  stop: string[];
  signal?: AbortSignal;
  /** Called with each piece of text as it is generated. */
  onText?: (text: string) => void;
};

export type GenerateResult = {
  text: string;
  tokensGenerated: number;
  promptTokens: number;
  finishReason: FinishReason;
};

export type EngineChatMessage = {role: 'system' | 'user' | 'assistant'; content: string};

export type EngineMemory = {vramUsed: number; vramTotal: number; ramUsed: number};

export type Engine = {
  /** Reported as `adapter_type` in the heartbeat, e.g. "llama.cpp". */
  readonly adapterType: string;
  /** cpu | cuda | metal: what actually runs the model. */
  readonly backend: string;
  readonly threads: number | undefined;
  /** Requests generated at once; more wait in the worker's queue. */
  readonly parallel: number;
  readonly contextSize: number;
  complete(prompt: string, options: GenerateOptions): Promise<GenerateResult>;
  chat(messages: EngineChatMessage[], options: GenerateOptions): Promise<GenerateResult>;
  memory(): Promise<EngineMemory>;
  close(): Promise<void>;
};

export type EngineLoadOptions = {
  modelPath: string;
  device: string;
  contextSize: number;
  threads: number | undefined;
  parallel: number;
  onProgress?: (loaded: number) => void;
};

export type EngineLoader = (options: EngineLoadOptions) => Promise<Engine>;
