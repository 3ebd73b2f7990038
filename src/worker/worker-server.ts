/**
 * The HTTP API every worker serves, whatever its engine: /health, rbee's /v1/infer and the
 * OpenAI routes (inference-handlers.ts does the work), and the workflow routes.
 */
import Fastify, {type FastifyInstance, type FastifyReply} from 'fastify';
import {baseModelNotice, isDefaultBaseModel} from '../models/base-model.js';
import {clientGoneSignal} from '../http/client-gone.js';
import {frameworkErrorHandler, installErrorHandling} from '../http/error-handling.js';
import {startSse, writeSse} from '../http/sse.js';
import type {ModelList} from '../protocol/wire.js';
import {inferenceHandlers, inferencePaths, type Answer} from './inference-handlers.js';
import type {WorkerRuntime} from './worker-runtime.js';
import {requireWorkerKey} from './worker-auth.js';
import {registerWorkflowRoutes} from './workflow-routes.js';

/** An answer over HTTP: an error thrown before it is written goes to fastify's error handler. */
function httpAnswer(reply: FastifyReply): Answer {
  let streaming = false;
  return {
    signal: clientGoneSignal(reply.raw),
    get streaming() {
      return streaming;
    },
    json(body) {
      void reply.send(body);
    },
    event(data) {
      if (!streaming) {
        streaming = true;
        reply.hijack();
        startSse(reply.raw);
      }
      writeSse(reply.raw, data);
    },
    end() {
      reply.raw.end();
    },
  };
}

export function createWorkerServer(runtime: WorkerRuntime, auth: {key: string | null}): FastifyInstance {
  const app = Fastify({logger: false, bodyLimit: 8 * 1024 * 1024, frameworkErrors: frameworkErrorHandler});
  installErrorHandling(app);
  if (auth.key !== null) {
    requireWorkerKey(app, auth.key);
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

  const handlers = inferenceHandlers(runtime);
  for (const path of inferencePaths) {
    const handle = handlers[path];
    app.post(path, async (request, reply) => {
      await handle(request.body, httpAnswer(reply));
      return reply;
    });
  }

  registerWorkflowRoutes(app, runtime);
  return app;
}
