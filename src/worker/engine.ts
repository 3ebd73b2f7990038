/** The generation types shared by the worker runtime and the adapter API. */
import type {FinishReason} from '../protocol/wire.js';

export type GenerateResult = {
  text: string;
  tokensGenerated: number;
  promptTokens: number;
  finishReason: FinishReason;
};

export type EngineChatMessage = {role: 'system' | 'user' | 'assistant'; content: string};
