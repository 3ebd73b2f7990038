/**
 * What the candle-vs-llama.cpp benchmark asks of each engine it compares: one greedy generation
 * of a fixed prompt and a fixed number of tokens, timed the same way whoever runs it, so that the
 * sides differ only in the engine.
 */

/** One measured generation. Prompt speed and decode speed are timed apart. */
export type SpeedMeasurement = {
  /** Tokens evaluated as the prompt (BOS included). */
  prompt_tokens: number;
  /** Prompt evaluation, up to the first generated token (its sampling included). */
  prompt_ms: number;
  prompt_tps: number;
  /** Tokens generated; fewer than asked when the engine stopped at an end-of-generation token. */
  generated_tokens: number;
  /** Single-token forward passes timed for decode: generated − 1 (the first token comes from the prompt's logits). */
  decode_steps: number;
  /** First generated token → last generated token. */
  decode_ms: number;
  decode_tps: number;
  /** stop (end of generation), length (all tokens generated), or the peer's own word. */
  finish: string;
  /** Cores this process (and its children) kept busy during the generation: Δ CPU time ÷ wall time; null where not measured. */
  process_cores: number | null;
};

export type SpeedEngine = {
  /** candle, node-llama-cpp, llama-bench. */
  readonly name: string;
  /** Versions, flags and settings that say what exactly was measured (goes to the JSON as is). */
  readonly description: Record<string, unknown>;
  measure(): Promise<SpeedMeasurement>;
  close(): Promise<void>;
};

/** tokens / ms as tokens per second; NaN when nothing was timed. */
export function tokensPerSecond(tokens: number, ms: number): number {
  return tokens > 0 && ms > 0 ? (tokens * 1000) / ms : Number.NaN;
}

/**
 * Prompt and decode speed from the three instants every in-process engine can give: the request,
 * the first generated token and the last one. Decode counts generated − 1 steps: the first token
 * is sampled from the prompt's logits, and each later one costs one forward pass.
 */
export function speedFromInstants(input: {
  promptTokens: number;
  generated: number;
  promptMs: number;
  decodeMs: number;
  finish: string;
  processCores: number | null;
}): SpeedMeasurement {
  const decodeSteps = Math.max(0, input.generated - 1);
  return {
    prompt_tokens: input.promptTokens,
    prompt_ms: input.promptMs,
    prompt_tps: tokensPerSecond(input.promptTokens, input.promptMs),
    generated_tokens: input.generated,
    decode_steps: decodeSteps,
    decode_ms: input.decodeMs,
    decode_tps: tokensPerSecond(decodeSteps, input.decodeMs),
    finish: input.finish,
    process_cores: input.processCores,
  };
}
