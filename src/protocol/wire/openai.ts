/**
 * OpenAI-compatible API, the subset rbee serves. Request bodies accept every field OpenAI documents
 * (clients send many, often at their defaults) and reject any other with a 400 naming it. Fields
 * that would change the answer in a way rbee cannot honour (tools, penalties, logprobs, ...) are
 * accepted only at their neutral value, so a client is never told "ok" for something not done.
 */
import {z} from 'zod';
import {count} from './fields.js';
import {sampling} from './inference.js';

const textPart = z.object({type: z.literal('text'), text: z.string()});
export const ChatMessageSchema = z.object({
  role: z.enum(['system', 'developer', 'user', 'assistant']),
  content: z.union([z.string(), z.array(textPart)]),
});
export type ChatMessage = z.infer<typeof ChatMessageSchema>;

const isEmpty = (value: unknown) =>
  value === null || (Array.isArray(value) ? value.length === 0 : typeof value === 'object' && Object.keys(value).length === 0);
/** A documented OpenAI field rbee does not implement: accepted only when it asks for nothing. */
const neutralOnly = (isNeutral: (value: unknown) => boolean, what: string) =>
  z.unknown().refine(isNeutral, `${what} is not supported by rbee; leave it out (or at its default)`).optional();

export const StreamOptionsSchema = z
  .strictObject({
    include_usage: z.boolean().optional(),
    include_obfuscation: z.boolean().optional(),
  })
  .nullable();

/** Fields of both OpenAI generation routes that carry no semantics rbee must honour, or are honoured as told. */
const openAiCommon = {
  n: z.literal(1).nullable().optional(),
  stream_options: StreamOptionsSchema.optional(),
  user: z.string().max(4_096).optional(),
  frequency_penalty: neutralOnly(value => value === null || value === 0, 'a frequency penalty'),
  presence_penalty: neutralOnly(value => value === null || value === 0, 'a presence penalty'),
  logit_bias: neutralOnly(isEmpty, 'logit_bias'),
};

export const ChatCompletionRequestSchema = z.strictObject({
  model: z.string().min(1),
  messages: z.array(ChatMessageSchema).min(1).max(1_000),
  max_completion_tokens: z.number().int().min(1).max(32_768).optional(),
  ...sampling,
  ...openAiCommon,
  metadata: z.record(z.string(), z.string()).nullable().optional(),
  store: z.boolean().nullable().optional(),
  service_tier: z.string().nullable().optional(),
  prompt_cache_key: z.string().optional(),
  safety_identifier: z.string().optional(),
  parallel_tool_calls: z.boolean().optional(),
  reasoning_effort: z.string().nullable().optional(),
  verbosity: z.string().nullable().optional(),
  logprobs: neutralOnly(value => value === null || value === false, 'logprobs'),
  top_logprobs: neutralOnly(value => value === null || value === 0, 'top_logprobs'),
  response_format: neutralOnly(
    value => value === null || (typeof value === 'object' && (value as {type?: unknown}).type === 'text'),
    'a response_format other than text',
  ),
  tools: neutralOnly(isEmpty, 'tools'),
  tool_choice: neutralOnly(value => value === null || value === 'none' || value === 'auto', 'tool_choice'),
  functions: neutralOnly(isEmpty, 'functions'),
  function_call: neutralOnly(value => value === null || value === 'none' || value === 'auto', 'function_call'),
  modalities: neutralOnly(value => value === null || (Array.isArray(value) && value.every(item => item === 'text')), 'a modality other than text'),
  audio: neutralOnly(value => value === null, 'audio output'),
  prediction: neutralOnly(value => value === null, 'predicted outputs'),
  web_search_options: neutralOnly(value => value === null, 'web search'),
});
export type ChatCompletionRequest = z.infer<typeof ChatCompletionRequestSchema>;

export const CompletionRequestSchema = z.strictObject({
  model: z.string().min(1),
  prompt: z.string().min(1).max(1_000_000),
  ...sampling,
  ...openAiCommon,
  best_of: neutralOnly(value => value === null || value === 1, 'best_of'),
  echo: neutralOnly(value => value === null || value === false, 'echo'),
  logprobs: neutralOnly(value => value === null || value === 0, 'logprobs'),
  suffix: neutralOnly(value => value === null || value === '', 'suffix'),
});
export type CompletionRequest = z.infer<typeof CompletionRequestSchema>;

const usage = z.object({prompt_tokens: count, completion_tokens: count, total_tokens: count});
const openAiFinish = z.enum(['stop', 'length']).nullable();

export const ChatCompletionSchema = z.object({
  id: z.string(),
  object: z.literal('chat.completion'),
  created: z.number().int(),
  model: z.string(),
  choices: z.array(
    z.object({
      index: z.number().int(),
      message: z.object({role: z.literal('assistant'), content: z.string()}),
      finish_reason: openAiFinish,
    }),
  ),
  usage,
});
export type ChatCompletion = z.infer<typeof ChatCompletionSchema>;

export const ChatCompletionChunkSchema = z.object({
  id: z.string(),
  object: z.literal('chat.completion.chunk'),
  created: z.number().int(),
  model: z.string(),
  choices: z.array(
    z.object({
      index: z.number().int(),
      delta: z.object({role: z.literal('assistant').optional(), content: z.string().optional()}),
      finish_reason: openAiFinish,
    }),
  ),
  /** With `stream_options.include_usage`: null on every chunk but the last, which has no choices. */
  usage: usage.nullable().optional(),
});
export type ChatCompletionChunk = z.infer<typeof ChatCompletionChunkSchema>;

export const TextCompletionSchema = z.object({
  id: z.string(),
  object: z.literal('text_completion'),
  created: z.number().int(),
  model: z.string(),
  choices: z.array(z.object({index: z.number().int(), text: z.string(), finish_reason: openAiFinish})),
  usage: usage.nullable().optional(),
});
export type TextCompletion = z.infer<typeof TextCompletionSchema>;

export const ModelListSchema = z.object({
  object: z.literal('list'),
  data: z.array(
    z.object({
      id: z.string(),
      object: z.literal('model'),
      created: z.number().int(),
      owned_by: z.string(),
      /** rbee: true for a base (pretrained, not instruction-tuned) model, such as the default; absent when not known. */
      base_model: z.boolean().optional(),
      /** rbee: what a client should know before using the model (why chat answers may echo the prompt). */
      notice: z.string().optional(),
    }),
  ),
});
export type ModelList = z.infer<typeof ModelListSchema>;
