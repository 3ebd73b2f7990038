/**
 * The HTTP API every worker serves, whatever its engine: /health, rbee's /v1/infer and the
 * OpenAI routes. Generation goes through the request queue, so the engine never sees more than
 * it can batch.
 */
import {baseModelNotice, isDefaultBaseModel} from '../models/base-model.js';
import Fastify, {type FastifyInstance, type FastifyReply} from 'fastify';
import {RbeeError, toRbeeError} from '../errors.js';
import {clientGoneSignal} from '../http/client-gone.js';
import {frameworkErrorHandler, installErrorHandling, toOpenAiError} from '../http/error-handling.js';
import {startSse, writeSse} from '../http/sse.js';
import {validateBody} from '../http/validate-body.js';
import {ChatCompletionRequestSchema, CompletionRequestSchema, InferRequestSchema, type InferResponse, type ModelList} from '../protocol/wire.js';
import {checkInferResult, checkStreamedText, checkTokenCount, type AdapterInferRequest} from '../adapters/adapter-api.js';
import type {EngineChatMessage, GenerateResult} from './engine.js';
import {chatChunk, chatCompletion, openAiId, textCompletion, toEngineMessages, usageChunk} from './openai-format.js';
import type {WorkerRuntime} from './worker-runtime.js';
import {requireWorkerKey} from './worker-auth.js';
import {registerWorkflowRoutes} from './workflow-routes.js';
import {traceStartup} from '../startup-trace.js';

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

export function createWorkerServer(runtime: WorkerRuntime, auth: {key: string | null}): FastifyInstance {
  const app = Fastify({logger: false, bodyLimit: 8 * 1024 * 1024, frameworkErrors: frameworkErrorHandler});
  installErrorHandling(app);
  if (auth.key !== null) {
    requireWorkerKey(app, auth.key);
  }

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
    const badEvent = new AbortController();
    let first = true;
    const request = inferRequest(job, sampling, AbortSignal.any([signal, badEvent.signal]), text => {
      if (first) {
        first = false;
        traceStartup(workerId, 'first token from the engine');
      }
      const problem = badEvent.signal.aborted ? null : checkStreamedText(adapterName, text);
      if (problem !== null) {
        badEvent.abort(problem);
      } else if (!badEvent.signal.aborted) {
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
      throw badEvent.signal.aborted ? badEvent.signal.reason : error;
    }
    if (badEvent.signal.aborted) {
      throw badEvent.signal.reason;
    }
    const result = checkInferResult(adapterName, answer);
    runtime.stats.recordRequest(result.tokensGenerated);
    return result;
  }

  /**
   * Streams over SSE, opening the stream only with its first event: until then (queue admission,
   * the context check, an engine that fails before its first token) an error is a plain HTTP answer
   * with its status (503 + Retry-After, 400, 5xx). After that it is an error event, never a hang.
   */
  async function stream(reply: FastifyReply, format: 'rbee' | 'openai', run: (signal: AbortSignal, send: (data: unknown) => void) => Promise<void>) {
    runtime.assertServing();
    const signal = clientGoneSignal(reply.raw);
    let open = false;
    const send = (data: unknown) => {
      if (!open) {
        open = true;
        reply.hijack();
        startSse(reply.raw);
      }
      writeSse(reply.raw, data);
    };
    try {
      await run(signal, send);
    } catch (error) {
      const rbeeError = toRbeeError(error, 'engine_error');
      if (!open) {
        throw rbeeError;
      }
      writeSse(reply.raw, format === 'openai' ? toOpenAiError(rbeeError) : {type: 'error', error: {code: rbeeError.code, message: rbeeError.message}});
    }
    reply.raw.end();
  }

  app.get('/health', async (_request, reply) => {
    const health = runtime.health();
    return reply.status(health.status === 'ready' || health.status === 'busy' ? 200 : 503).send(health);
  });

  app.get('/v1/models', async (): Promise<ModelList> => ({
    object: 'list',
    data: [
      {
        id: runtime.options.modelName,
        object: 'model',
        created: Math.floor(runtime.stats.startedAt / 1000),
        owned_by: 'rbee',
        ...(isDefaultBaseModel(runtime.context.modelPath) ? {base_model: true, notice: baseModelNotice} : {}),
      },
    ],
  }));

  app.post('/v1/infer', async (request, reply) => {
    const body = validateBody(InferRequestSchema, request.body, 'infer request');
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
      await stream(reply, 'rbee', async (signal, send) => {
        const result = await generate({kind: 'complete', prompt: body.prompt}, body, signal, text => send({type: 'token', text}));
        send({type: 'done', ...response(result)});
      });
      return;
    }
    const result = await generate({kind: 'complete', prompt: body.prompt}, body, clientGoneSignal(reply.raw));
    return response(result);
  });

  app.post('/v1/chat/completions', async (request, reply) => {
    const body = validateBody(ChatCompletionRequestSchema, request.body, 'chat completion request');
    const sampling = {...body, max_tokens: body.max_completion_tokens ?? body.max_tokens};
    const job: Job = {kind: 'chat', messages: toEngineMessages(body.messages)};
    const id = openAiId('chatcmpl');
    const model = runtime.options.modelName;
    if (body.stream === true) {
      const usage = body.stream_options?.include_usage === true;
      await stream(reply, 'openai', async (signal, send) => {
        // The role chunk goes with the first token, so nothing is sent before the request is admitted.
        let announced = false;
        const announce = () => {
          if (!announced) {
            announced = true;
            send(chatChunk(id, model, {role: 'assistant', content: ''}, null, usage));
          }
        };
        const result = await generate(job, sampling, signal, text => {
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
    return chatCompletion(id, model, await generate(job, sampling, clientGoneSignal(reply.raw)));
  });

  app.post('/v1/completions', async (request, reply) => {
    const body = validateBody(CompletionRequestSchema, request.body, 'completion request');
    const job: Job = {kind: 'complete', prompt: body.prompt};
    const id = openAiId('cmpl');
    const model = runtime.options.modelName;
    if (body.stream === true) {
      const usage = body.stream_options?.include_usage === true;
      await stream(reply, 'openai', async (signal, send) => {
        const result = await generate(job, body, signal, text => send(textCompletion(id, model, text, null, {streamed: true, usage})));
        send(textCompletion(id, model, '', result, {streamed: true, usage}));
        if (usage) {
          send(usageChunk('text_completion', id, model, result));
        }
        send('[DONE]');
      });
      return;
    }
    const result = await generate(job, body, clientGoneSignal(reply.raw));
    return textCompletion(id, model, result.text, result);
  });

  registerWorkflowRoutes(app, runtime);
  return app;
}
