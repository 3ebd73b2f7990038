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
import {workerUrl} from '../worker-record.js';

type Routed = {model?: string | undefined; stream?: boolean | undefined};

async function relay(reply: FastifyReply, upstream: Response, streamed: boolean): Promise<void> {
  if (!streamed || !upstream.ok || upstream.body === null) {
    const text = await upstream.text();
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
    }
  } catch (error) {
    // The worker died or the connection broke mid-stream: end the client's stream with an error, never a hang.
    if (!reply.raw.destroyed) {
      writeSse(reply.raw, {type: 'error', error: {code: 'worker_failed', message: `worker stream broke: ${(error as Error).message}`}});
    }
  }
  reply.raw.end();
}

export function registerInferenceRoutes(app: FastifyInstance, supervisor: Supervisor): void {
  function route<S extends z.ZodType<Routed>>(path: string, schema: S, what: string): void {
    app.post(path, async (request, reply) => {
      const body = validateBody(schema, request.body, what);
      const worker = pickWorker(supervisor, body.model);
      const signal = clientGoneSignal(reply.raw);
      worker.inFlight++;
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
        await relay(reply, upstream, body.stream === true);
      } finally {
        worker.inFlight--;
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
