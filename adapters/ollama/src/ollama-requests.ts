/**
 * Translation between rbee and Ollama's native API, kept free of I/O so it is tested on its own:
 * rbee's generations become /api/generate (raw text continuation) or /api/chat bodies, Ollama's
 * NDJSON stream lines are checked as they arrive, and /api/ps + /api/tags become heartbeat fields.
 * Everything Ollama answers is validated: it is input from another program.
 */
import {z} from 'zod';
import {RbeeError, type AdapterHeartbeat, type AdapterInferRequest} from 'rbee';

/** Ollama's own name rules (letters, digits, `_`, `-`, `.`), lower case so one model has one name. */
export function ollamaModelName(name: string): string {
  const cleaned = name
    .toLowerCase()
    .replace(/[^a-z0-9_.-]+/g, '-')
    .replace(/^[^a-z0-9]+/, '')
    .slice(0, 80);
  return cleaned === '' ? 'model' : cleaned;
}

/** The name a store entry is known by in rbee: Ollama's, without the implied `:latest` tag. */
export function withoutLatestTag(name: string): string {
  return name.endsWith(':latest') ? name.slice(0, -':latest'.length) : name;
}

/**
 * The Modelfile an imported GGUF gets. No TEMPLATE line: Ollama reads the chat template from the
 * GGUF's metadata itself (a base model without one gets Ollama's plain `{{ .Prompt }}`). The
 * context size is the worker's, so every request sees the same window.
 */
export function modelfile(ggufPath: string, contextSize: number): string {
  if (/[\n\r]/.test(ggufPath)) {
    throw new RbeeError('invalid_request', `model path ${JSON.stringify(ggufPath)} contains a line break: it cannot go into a Modelfile`);
  }
  return `FROM ${ggufPath}\nPARAMETER num_ctx ${contextSize}\n`;
}

export type WorkerShape = {threads: number | undefined; cpuOnly: boolean};

/** Ollama's `options`: sampling and limits, in its own names, plus the worker's threads and device. */
export function ollamaOptions(request: AdapterInferRequest, contextSize: number, shape: WorkerShape): Record<string, unknown> {
  return {
    temperature: request.temperature,
    num_predict: request.maxTokens,
    num_ctx: contextSize,
    ...(shape.threads === undefined ? {} : {num_thread: shape.threads}),
    // No layers on a GPU for a CPU worker, whatever the binary finds.
    ...(shape.cpuOnly ? {num_gpu: 0} : {}),
    ...(request.topK === undefined ? {} : {top_k: request.topK}),
    ...(request.topP === undefined ? {} : {top_p: request.topP}),
    ...(request.seed === undefined ? {} : {seed: request.seed}),
    ...(request.stop.length === 0 ? {} : {stop: request.stop}),
  };
}

/**
 * The engine route and body for a generation: a completion is a raw continuation (`raw: true`,
 * no template, as rbee's /v1/infer and OpenAI's /v1/completions mean it), a chat goes through
 * the model's template on /api/chat.
 */
export function ollamaRequest(
  request: AdapterInferRequest,
  model: string,
  contextSize: number,
  shape: WorkerShape,
): {path: '/api/generate' | '/api/chat'; body: Record<string, unknown>} {
  const options = ollamaOptions(request, contextSize, shape);
  if (request.kind === 'chat') {
    return {path: '/api/chat', body: {model, messages: request.messages.map(({role, content}) => ({role, content})), stream: true, options}};
  }
  return {path: '/api/generate', body: {model, prompt: request.prompt, raw: true, stream: true, options}};
}

const StreamLineSchema = z.object({
  response: z.string().optional(),
  message: z.object({content: z.string().optional()}).optional(),
  done: z.boolean().optional(),
  done_reason: z.string().optional(),
  prompt_eval_count: z.number().int().nonnegative().optional(),
  eval_count: z.number().int().nonnegative().optional(),
  error: z.string().optional(),
});
export type OllamaStreamLine = z.infer<typeof StreamLineSchema>;

/** One NDJSON line of a streamed answer; an `error` line or a malformed one fails the generation. */
export function parseStreamLine(line: string): OllamaStreamLine {
  let json: unknown;
  try {
    json = JSON.parse(line);
  } catch (error) {
    throw new RbeeError('engine_error', `ollama streamed a line that is not JSON: ${line.slice(0, 200)}`, {cause: error});
  }
  const parsed = StreamLineSchema.safeParse(json);
  if (!parsed.success) {
    throw new RbeeError('engine_error', `ollama streamed an unexpected line (${parsed.error.issues[0]?.path.join('.') ?? '?'}): ${line.slice(0, 200)}`);
  }
  if (parsed.data.error !== undefined) {
    throw new RbeeError('engine_error', `ollama failed the generation: ${parsed.data.error}`);
  }
  return parsed.data;
}

/** The text piece a stream line carries (generate: `response`, chat: `message.content`). */
export function streamText(line: OllamaStreamLine): string {
  return line.response ?? line.message?.content ?? '';
}

export function finishReason(doneReason: string | undefined, aborted: boolean): 'stop' | 'length' | 'cancelled' {
  if (aborted) {
    return 'cancelled';
  }
  return doneReason === 'length' ? 'length' : 'stop';
}

const PsSchema = z.object({
  models: z
    .array(
      z.object({
        name: z.string().min(1),
        size: z.number().nonnegative().optional(),
        size_vram: z.number().nonnegative().optional(),
        expires_at: z.string().optional(),
      }),
    )
    .nullable()
    .optional(),
});

const TagsSchema = z.object({
  models: z
    .array(z.object({name: z.string().min(1)}))
    .nullable()
    .optional(),
});

export type OllamaPs = z.infer<typeof PsSchema>;
export type OllamaTags = z.infer<typeof TagsSchema>;

export function parsePs(value: unknown): OllamaPs {
  const parsed = PsSchema.safeParse(value);
  if (!parsed.success) {
    throw new RbeeError('invalid_response', `ollama's /api/ps answered an unexpected shape: ${parsed.error.issues[0]?.message ?? ''}`);
  }
  return parsed.data;
}

export function parseTags(value: unknown): OllamaTags {
  const parsed = TagsSchema.safeParse(value);
  if (!parsed.success) {
    throw new RbeeError('invalid_response', `ollama's /api/tags answered an unexpected shape: ${parsed.error.issues[0]?.message ?? ''}`);
  }
  return parsed.data;
}

/** An ISO timestamp from Ollama's (nanosecond) one; undefined where it is not a time. */
function isoTime(value: string | undefined): string | undefined {
  if (value === undefined) {
    return undefined;
  }
  const time = Date.parse(value);
  return Number.isNaN(time) ? undefined : new Date(time).toISOString();
}

/**
 * The heartbeat's multi-model fields: what is loaded (/api/ps) with its device memory and when
 * Ollama will unload it, and every name the worker answers for (its store, /api/tags). `rbeeName`
 * turns an Ollama name back into the one requests use.
 */
export function modelHeartbeat(ps: OllamaPs, tags: OllamaTags, rbeeName: (ollamaName: string) => string, alsoServed: string[]): AdapterHeartbeat {
  const loaded = ps.models ?? [];
  const allocations: Record<string, number> = {};
  const expiry: Record<string, string> = {};
  for (const model of loaded) {
    const name = rbeeName(model.name);
    allocations[name] = Math.round(model.size_vram ?? 0);
    const expires = isoTime(model.expires_at);
    if (expires !== undefined) {
      expiry[name] = expires;
    }
  }
  const available = new Set([...alsoServed, ...(tags.models ?? []).map(model => rbeeName(model.name))]);
  return {
    loaded_models: loaded.map(model => rbeeName(model.name)),
    vram_allocations: allocations,
    vram_used: Object.values(allocations).reduce((sum, bytes) => sum + bytes, 0),
    model_expires_at: expiry,
    available_models: [...available],
  };
}
