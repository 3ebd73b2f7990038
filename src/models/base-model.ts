/**
 * The default model is the *base* (pretrained) Gemma 3 270M, not the instruction-tuned one: its
 * GGUF has no chat template, and asked a question it continues the text instead of answering.
 * Users are told so where they meet it: at spawn, and in /v1/models.
 */
import path from 'node:path';

export const defaultModelFileName = 'gemma-3-270m-q4_k_m.gguf';

export const baseModelNotice =
  'the default model is the base Gemma 3 270M (pretrained, no chat template): it continues text rather than answering questions, so give it text to complete, e.g. "The capital of France is"';

/** Whether a worker's model file is the default model (a copy of it anywhere, such as a test cache). */
export function isDefaultBaseModel(modelPath: string | null): boolean {
  return modelPath !== null && path.basename(modelPath) === defaultModelFileName;
}
