/**
 * What a worker does with a generation request, whatever it came by: the worker's HTTP routes
 * (worker-server.ts) and the hive's link (worker-link.ts) hand each request here with an `Answer`
 * to write to. Generation goes through the request queue, so the engine never sees more than it
 * can batch.
 */
import {RbeeError, toRbeeError} from '../errors.js';
import {toOpenAiError} from '../http/error-handling.js';
import {validateBody} from '../http/validate-body.js';
import {ChatCompletionRequestSchema, CompletionRequestSchema, InferRequestSchema, type InferResponse} from '../protocol/wire.js';
import {checkInferResult, checkStreamedText, checkTokenCount, type AdapterInferRequest} from '../adapters/adapter-api.js';
import type {EngineChatMessage, GenerateResult} from './engine.js';
import {chatChunk, chatCompletion, openAiId, textCompletion, toEngineMessages, usageChunk} from './openai-format.js';
import type {WorkerRuntime} from './worker-runtime.js';
import {traceStartup} from '../startup-trace.js';

/**
 * Where a request's answer goes. Either one JSON answer, or a stream of SSE events that opens
 * (status 200) with its first event; an error thrown before either is answered by the transport
 * with the error's status.
 */
export type Answer = {
  /** Aborted when the caller goes away before the answer is complete. */
  signal: AbortSignal;
  /** Whether the first event has opened a stream. */
  readonly streaming: boolean;
  /** The whole answer, status 200. */
  json(body: unknown): void;
  /** One SSE event (a string goes as it is, anything else as JSON). */
  event(data: unknown): void;
  /** Ends a stream. */
  end(): void;
};

type Handler = (body: unknown, answer: Answer) => Promise<void>;

/** The generation routes, by path: what both transports serve. */
export const inferencePaths = ['/v1/infer', '/v1/chat/completions', '/v1/completions'] as const;
export type InferencePath = (typeof inferencePaths)[number];

export function isInferencePath(path: string): path is InferencePath {
  return (inferencePaths as readonly string[]).includes(path);
}

type Sampling = {
  model?: string | undefined;
  max_tokens?: number | undefined;
  temperature?: number | undefined;
  top_k?: number | undefined;
  top_p?: number | undefined;
  seed?: number | undefined;
  stop?: string | string[] | undefined;
};

const defaultMaxTokens = 256;

export type Job = {kind: 'complete'; prompt: string} | {kind: 'chat'; messages: EngineChatMessage[]};

function inferRequest(job: Job, sampling: Sampling, signal: AbortSignal, onText?: (text: string) => void): AdapterInferRequest {
  return {
    kind: job.kind,
    ...(sampling.model === undefined ? {} : {model: sampling.model}),
    prompt: job.kind === 'complete' ? job.prompt : '',
    messages: job.kind === 'chat' ? job.messages : [],
    maxTokens: sampling.max_tokens ?? defaultMaxTokens,
    temperature: sampling.temperature ?? 0.8,
    ...(sampling.top_k === undefined ? {} : {topK: sampling.top_k}),
    ...(sampling.top_p === undefined ? {} : {topP: sampling.top_p}),
    ...(sampling.seed === undefined ? {} : {seed: sampling.seed}),
    stop: sampling.stop === undefined ? [] : [sampling.stop].flat(),
    signal,
    onText: onText ?? (() => undefined),
  };
}

/** Tokenizer-added tokens (BOS, EOS, a leading space piece) a prompt may carry beyond one per byte. */
const tokenizerExtraTokens = 8;

/** An upper bound on a prompt's tokens without tokenizing it: one per UTF-8 byte, plus the tokenizer's own. */
export function maxPromptTokens(job: Job): number {
  const texts = job.kind === 'chat' ? job.messages.map(message => message.content) : [job.prompt];
  // A separator between messages may become a token of its own.
  return texts.reduce((sum, text) => sum + Buffer.byteLength(text, 'utf8') + 1, tokenizerExtraTokens);
}

export function inferenceHandlers(runtime: WorkerRuntime): Record<InferencePath, Handler> {
  /**
   * Refuses, before it queues, a prompt the worker's context cannot hold (when the adapter can count
   * tokens). Counting is a round trip to the engine in front of every request's first token, so a
   * prompt too short to overflow the context is not counted: a token covers at least one byte of
   * the text, and tokenizers add only a few of their own (BOS, a leading space piece).
   */
  async function checkContextFits(job: Job): Promise<void> {
    const {adapter, context} = runtime;
    if (adapter.countTokens === undefined || maxPromptTokens(job) < context.contextSize) {
      return;
    }
    const prompt = {kind: job.kind, prompt: job.kind === 'complete' ? job.prompt : '', messages: job.kind === 'chat' ? job.messages : []};
    const tokens = checkTokenCount(adapter.name, await adapter.countTokens(prompt, context));
    if (tokens >= context.contextSize) {
      throw new RbeeError(
        'context_length_exceeded',
        `the prompt is ${tokens} tokens but this worker's context holds ${context.contextSize} (its context_size): shorten the prompt, or spawn a worker with a larger --context-size`,
        {field: job.kind === 'chat' ? 'messages' : 'prompt'},
      );
    }
  }

  /**
   * One generation through the queue. What the adapter streams and returns is checked (it may be
   * a third party's plugin); a bad piece stops the generation and fails the request naming the plugin.
   */
  async function generate(job: Job, sampling: Sampling, signal: AbortSignal, onText?: (text: string) => void): Promise<GenerateResult> {
    const workerId = runtime.options.workerId;
    traceStartup(workerId, 'request received');
    runtime.assertServing();
    await checkContextFits(job);
    const adapterName = runtime.adapter.name;
    // The adapter's signal: the caller gone, or a bad piece from the plugin. One controller fed by
    // both (AbortSignal.any costs tens of µs a request, on the way to the first token).
    const stop = new AbortController();
    let bad: RbeeError | null = null;
    const onGone = () => stop.abort(signal.reason);
    if (signal.aborted) {
      onGone();
    } else {
      signal.addEventListener('abort', onGone, {once: true});
    }
    let first = true;
    const request = inferRequest(job, sampling, stop.signal, text => {
      if (first) {
        first = false;
        traceStartup(workerId, 'first token from the engine');
      }
      if (bad !== null) {
        return;
      }
      bad = checkStreamedText(adapterName, text);
      if (bad !== null) {
        stop.abort(bad);
      } else {
        onText?.(text);
      }
    });
    let answer: unknown;
    try {
      answer = await runtime.queue.run(() => {
        traceStartup(workerId, 'adapter called');
        return runtime.adapter.infer(request, runtime.context);
      }, signal);
    } catch (error) {
      throw bad ?? error;
    } finally {
      signal.removeEventListener('abort', onGone);
    }
    if (bad !== null) {
      throw bad;
    }
    const result = checkInferResult(adapterName, answer);
    runtime.stats.recordRequest(result.tokensGenerated);
    return result;
  }

  /**
   * Streams over SSE, opening the stream only with its first event: until then (queue admission,
   * the context check, an engine that fails before its first token) an error is a plain answer
   * with its status (503 + Retry-After, 400, 5xx). After that it is an error event, never a hang.
   */
  async function stream(answer: Answer, format: 'rbee' | 'openai', run: (send: (data: unknown) => void) => Promise<void>) {
    runtime.assertServing();
    try {
      await run(data => answer.event(data));
    } catch (error) {
      const rbeeError = toRbeeError(error, 'engine_error');
      if (!answer.streaming) {
        throw rbeeError;
      }
      answer.event(format === 'openai' ? toOpenAiError(rbeeError) : {type: 'error', error: {code: rbeeError.code, message: rbeeError.message}});
    }
    answer.end();
  }

  const infer: Handler = async (raw, answer) => {
    const body = validateBody(InferRequestSchema, raw, 'infer request');
    const started = Date.now();
    const response = (result: GenerateResult): InferResponse => ({
      worker_id: runtime.options.workerId,
      model: runtime.options.modelName,
      text: result.text,
      tokens_generated: result.tokensGenerated,
      prompt_tokens: result.promptTokens,
      finish_reason: result.finishReason,
      duration_ms: Date.now() - started,
    });
    if (body.stream === true) {
      await stream(answer, 'rbee', async send => {
        const result = await generate({kind: 'complete', prompt: body.prompt}, body, answer.signal, text => send({type: 'token', text}));
        send({type: 'done', ...response(result)});
      });
      return;
    }
    answer.json(response(await generate({kind: 'complete', prompt: body.prompt}, body, answer.signal)));
  };

  const chat: Handler = async (raw, answer) => {
    const body = validateBody(ChatCompletionRequestSchema, raw, 'chat completion request');
    const sampling = {...body, max_tokens: body.max_completion_tokens ?? body.max_tokens};
    const job: Job = {kind: 'chat', messages: toEngineMessages(body.messages)};
    const id = openAiId('chatcmpl');
    const model = runtime.options.modelName;
    if (body.stream === true) {
      const usage = body.stream_options?.include_usage === true;
      await stream(answer, 'openai', async send => {
        // The role chunk goes with the first token, so nothing is sent before the request is admitted.
        let announced = false;
        const announce = () => {
          if (!announced) {
            announced = true;
            send(chatChunk(id, model, {role: 'assistant', content: ''}, null, usage));
          }
        };
        const result = await generate(job, sampling, answer.signal, text => {
          announce();
          send(chatChunk(id, model, {content: text}, null, usage));
        });
        announce();
        send(chatChunk(id, model, {}, result.finishReason, usage));
        if (usage) {
          send(usageChunk('chat.completion.chunk', id, model, result));
        }
        send('[DONE]');
      });
      return;
    }
    answer.json(chatCompletion(id, model, await generate(job, sampling, answer.signal)));
  };

  const complete: Handler = async (raw, answer) => {
    const body = validateBody(CompletionRequestSchema, raw, 'completion request');
    const job: Job = {kind: 'complete', prompt: body.prompt};
    const id = openAiId('cmpl');
    const model = runtime.options.modelName;
    if (body.stream === true) {
      const usage = body.stream_options?.include_usage === true;
      await stream(answer, 'openai', async send => {
        const result = await generate(job, body, answer.signal, text => send(textCompletion(id, model, text, null, {streamed: true, usage})));
        send(textCompletion(id, model, '', result, {streamed: true, usage}));
        if (usage) {
          send(usageChunk('text_completion', id, model, result));
        }
        send('[DONE]');
      });
      return;
    }
    const result = await generate(job, body, answer.signal);
    answer.json(textCompletion(id, model, result.text, result));
  };

  return {'/v1/infer': infer, '/v1/chat/completions': chat, '/v1/completions': complete};
}
