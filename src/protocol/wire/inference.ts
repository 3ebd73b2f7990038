/**
 * rbee's own inference API: POST /v1/infer on a worker (direct) or on the hive (routed by model).
 * Request bodies are strict: an unknown field is a 400 naming it, never silently ignored.
 */
import {z} from 'zod';
import {count, id} from './fields.js';

const stop = z.union([z.string().min(1), z.array(z.string().min(1)).max(16)]);
/** The sampling fields rbee's API and the OpenAI routes share. */
export const sampling = {
  max_tokens: z.number().int().min(1).max(32_768).optional(),
  temperature: z.number().min(0).max(2).optional(),
  top_k: z.number().int().min(0).optional(),
  top_p: z.number().gt(0).max(1).optional(),
  seed: z
    .number()
    .int()
    .nonnegative()
    .max(2 ** 32 - 1)
    .optional(),
  stop: stop.optional(),
  stream: z.boolean().optional(),
};

export const InferRequestSchema = z.strictObject({
  prompt: z.string().min(1).max(1_000_000),
  model: z.string().min(1).optional(),
  ...sampling,
});
export type InferRequest = z.infer<typeof InferRequestSchema>;

export const FinishReasonSchema = z.enum(['stop', 'length', 'cancelled']);
export type FinishReason = z.infer<typeof FinishReasonSchema>;

export const InferResponseSchema = z.object({
  worker_id: id,
  model: z.string(),
  text: z.string(),
  tokens_generated: count,
  prompt_tokens: count,
  finish_reason: FinishReasonSchema,
  duration_ms: z.number().nonnegative(),
});
export type InferResponse = z.infer<typeof InferResponseSchema>;

/** One Server-Sent Event `data:` payload of a streamed /v1/infer. */
export const InferStreamEventSchema = z.discriminatedUnion('type', [
  z.object({type: z.literal('token'), text: z.string()}),
  InferResponseSchema.extend({type: z.literal('done')}),
  z.object({type: z.literal('error'), error: z.object({code: z.string(), message: z.string()})}),
]);
export type InferStreamEvent = z.infer<typeof InferStreamEventSchema>;
