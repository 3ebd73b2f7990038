/** Shapes rbee's generation results as OpenAI objects, for the clients that already speak that API. */
import {randomUUID} from 'node:crypto';
import type {ChatCompletion, ChatCompletionChunk, ChatMessage, FinishReason, TextCompletion} from '../protocol/wire.js';
import type {EngineChatMessage, GenerateResult} from './engine.js';

const nowSeconds = () => Math.floor(Date.now() / 1000);

export function openAiId(prefix: 'chatcmpl' | 'cmpl'): string {
  return `${prefix}-${randomUUID().replaceAll('-', '')}`;
}

function openAiFinish(reason: FinishReason): 'stop' | 'length' {
  return reason === 'length' ? 'length' : 'stop';
}

export function toEngineMessages(messages: ChatMessage[]): EngineChatMessage[] {
  return messages.map(message => ({
    role: message.role === 'developer' ? 'system' : message.role,
    content: typeof message.content === 'string' ? message.content : message.content.map(part => part.text).join(''),
  }));
}

export function chatCompletion(id: string, model: string, result: GenerateResult): ChatCompletion {
  return {
    id,
    object: 'chat.completion',
    created: nowSeconds(),
    model,
    choices: [{index: 0, message: {role: 'assistant', content: result.text}, finish_reason: openAiFinish(result.finishReason)}],
    usage: {
      prompt_tokens: result.promptTokens,
      completion_tokens: result.tokensGenerated,
      total_tokens: result.promptTokens + result.tokensGenerated,
    },
  };
}

export function chatChunk(id: string, model: string, delta: {role?: 'assistant'; content?: string}, finish: FinishReason | null): ChatCompletionChunk {
  return {
    id,
    object: 'chat.completion.chunk',
    created: nowSeconds(),
    model,
    choices: [{index: 0, delta, finish_reason: finish === null ? null : openAiFinish(finish)}],
  };
}

export function textCompletion(id: string, model: string, text: string, result: GenerateResult | null): TextCompletion {
  return {
    id,
    object: 'text_completion',
    created: nowSeconds(),
    model,
    choices: [{index: 0, text, finish_reason: result === null ? null : openAiFinish(result.finishReason)}],
    ...(result === null ? {} : {
      usage: {
        prompt_tokens: result.promptTokens,
        completion_tokens: result.tokensGenerated,
        total_tokens: result.promptTokens + result.tokensGenerated,
      },
    }),
  };
}
