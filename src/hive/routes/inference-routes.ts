/**
 * The hive's inference API: validates the request itself (a bad one never reaches a worker), picks
 * a worker and relays the worker's answer, streams included, byte for byte.
 */
import {baseModelNotice, isDefaultBaseModel} from '../../models/base-model.js';
import type {FastifyInstance, FastifyReply} from 'fastify';
import type {z} from 'zod';
import {RbeeError} from '../../errors.js';
import {clientGoneSignal} from '../../http/client-gone.js';
import {writeSse} from '../../http/sse.js';
import {validateBody} from '../../http/validate-body.js';
import {
  ChatCompletionRequestSchema,
  CompletionRequestSchema,
  InferRequestSchema,
  type ModelList,
} from '../../protocol/wire.js';
import {pickWorker, servedModels} from '../router.js';
import type {Supervisor} from '../supervisor.js';
import {answerTokens, streamTokens, type RequestEventSink} from '../request-events.js';
import {workerUrl} from '../worker-record.js';

type Routed = {model?: string | undefined; stream?: boolean | undefined};

/** Called with the tokens relayed so far (a whole answer once, a stream as it goes); null when nobody follows events. */
type TokenTap = ((tokens: number) => void) | null;

async function relay(reply: FastifyReply, upstream: Response, streamed: boolean, path: string, tap: TokenTap): Promise<void> {
  if (!streamed || !upstream.ok || upstream.body === null) {
    const text = await upstream.text();
    if (tap !== null && upstream.ok) {
      tap(answerTokens(text));
    }
    const retryAfter = upstream.headers.get('retry-after');
    if (retryAfter !== null) {
      void reply.header('retry-after', retryAfter);
    }
    await reply.status(upstream.status).header('content-type', upstream.headers.get('content-type') ?? 'application/json').send(text);
    return;
  }
  reply.hijack();
  reply.raw.writeHead(upstream.status, {
    'content-type': upstream.headers.get('content-type') ?? 'text/event-stream',
    'cache-control': 'no-cache, no-transform',
    connection: 'keep-alive',
  });
  reply.raw.flushHeaders();
  try {
    for await (const chunk of upstream.body) {
      reply.raw.write(chunk);
      if (tap !== null) {
        tap(streamTokens(path, chunk));
      }
    }
  } catch (error) {
    // The worker died or the connection broke mid-stream: end the client's stream with an error, never a hang.
    if (!reply.raw.destroyed) {
      writeSse(reply.raw, {type: 'error', error: {code: 'worker_failed', message: `worker stream broke: ${(error as Error).message}`}});
    }
  }
  reply.raw.end();
}

/** Progress events of a stream: at most one a second per request. */
const progressEveryMs = 1_000;

export function registerInferenceRoutes(app: FastifyInstance, supervisor: Supervisor, events?: RequestEventSink): void {
  function route<S extends z.ZodType<Routed>>(path: string, schema: S, what: string): void {
    app.post(path, async (request, reply) => {
      const body = validateBody(schema, request.body, what);
      const worker = pickWorker(supervisor, body.model);
      const signal = clientGoneSignal(reply.raw);
      worker.inFlight++;
      const started = Date.now();
      const following = events?.active() === true ? events : null;
      let pending = 0;
      let lastProgress = started;
      const event = (phase: 'started' | 'progress' | 'ended', extra: {status?: number} = {}) => {
        following?.publish({
          type: 'request', at: new Date().toISOString(), worker_id: worker.id, phase, in_flight: worker.inFlight,
          ...(phase === 'started' ? {} : {tokens: pending}), ...(phase === 'ended' ? {duration_ms: Date.now() - started} : {}), ...extra,
        });
        pending = 0;
      };
      const tap: TokenTap = following === null ? null : tokens => {
        pending += tokens;
        if (Date.now() - lastProgress >= progressEveryMs) {
          lastProgress = Date.now();
          event('progress');
        }
      };
      event('started');
      let status: number | undefined;
      try {
        let upstream: Response;
        try {
          upstream = await fetch(`${workerUrl(worker)}${path}`, {
            method: 'POST',
            headers: {'content-type': 'application/json'},
            body: JSON.stringify(request.body),
            signal,
          });
        } catch (error) {
          throw new RbeeError('upstream_error', `worker ${worker.id} did not answer: ${(error as Error).message}`, {cause: error});
        }
        status = upstream.status;
        await relay(reply, upstream, body.stream === true, path, tap);
      } finally {
        worker.inFlight--;
        event('ended', status === undefined ? {} : {status});
      }
    });
  }

  route('/v1/infer', InferRequestSchema, 'infer request');
  route('/v1/chat/completions', ChatCompletionRequestSchema, 'chat completion request');
  route('/v1/completions', CompletionRequestSchema, 'completion request');

  app.get('/v1/models', async (): Promise<ModelList> => ({
    object: 'list',
    data: servedModels(supervisor).map(id => {
      const base = [...supervisor.workers.values()].some(record => record.modelName === id && isDefaultBaseModel(record.modelPath));
      return {id, object: 'model' as const, created: 0, owned_by: 'rbee', ...(base ? {base_model: true, notice: baseModelNotice} : {})};
    }),
  }));
}
