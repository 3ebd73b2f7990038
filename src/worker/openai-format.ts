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
    usage: usageOf(result),
  };
}

function usageOf(result: GenerateResult) {
  return {prompt_tokens: result.promptTokens, completion_tokens: result.tokensGenerated, total_tokens: result.promptTokens + result.tokensGenerated};
}

/** A stream chunk; with `include_usage` asked for, `usage: null` as OpenAI sends on all but the usage chunk. */
export function chatChunk(
  id: string,
  model: string,
  delta: {role?: 'assistant'; content?: string},
  finish: FinishReason | null,
  withUsage = false,
): ChatCompletionChunk {
  return {
    id,
    object: 'chat.completion.chunk',
    created: nowSeconds(),
    model,
    choices: [{index: 0, delta, finish_reason: finish === null ? null : openAiFinish(finish)}],
    ...(withUsage ? {usage: null} : {}),
  };
}

/**
 * The last chunk before `[DONE]` of a stream asked with `stream_options.include_usage`: no choices,
 * the whole request's token counts.
 */
export function usageChunk(
  object: 'chat.completion.chunk' | 'text_completion',
  id: string,
  model: string,
  result: GenerateResult,
): ChatCompletionChunk | TextCompletion {
  const base = {id, created: nowSeconds(), model, choices: [], usage: usageOf(result)};
  return object === 'chat.completion.chunk' ? {...base, object} : {...base, object};
}

/**
 * A text completion, or one chunk of a streamed one. Streamed, usage comes only as the separate
 * usage chunk (when asked for), as OpenAI streams it.
 */
export function textCompletion(
  id: string,
  model: string,
  text: string,
  result: GenerateResult | null,
  streamed?: {streamed: true; usage: boolean},
): TextCompletion {
  return {
    id,
    object: 'text_completion',
    created: nowSeconds(),
    model,
    choices: [{index: 0, text, finish_reason: result === null ? null : openAiFinish(result.finishReason)}],
    ...(streamed === undefined ? (result === null ? {} : {usage: usageOf(result)}) : streamed.usage ? {usage: null} : {}),
  };
}
