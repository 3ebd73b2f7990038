/**
 * A worker's workflow API, for adapters with `workflows` (ComfyUI): POST /v1/workflows runs one
 * and streams its events as SSE, GET /v1/workflows/:id/outputs/… relays a file it wrote, DELETE
 * cancels it. Until the first event (the engine accepted the graph) a failure is a plain HTTP
 * answer, so an engine's validation error reaches the client as a 400 naming the node.
 */
import {Readable} from 'node:stream';
import type {ReadableStream as NodeReadableStream} from 'node:stream/web';
import type {FastifyInstance} from 'fastify';
import {RbeeError, toRbeeError} from '../errors.js';
import {clientGoneSignal} from '../http/client-gone.js';
import {startSse, writeSse} from '../http/sse.js';
import {validateBody} from '../http/validate-body.js';
import {parseWire} from '../protocol/parse.js';
import {parseOutputPath, WorkerWorkflowRequestSchema, WorkflowEventSchema, type WorkflowEvent} from '../protocol/wire.js';
import type {AdapterWorkflows} from '../adapters/adapter-api.js';
import type {WorkerRuntime} from './worker-runtime.js';

function workflowsOf(runtime: WorkerRuntime): AdapterWorkflows {
  const workflows = runtime.adapter.workflows;
  if (workflows === undefined) {
    throw new RbeeError(
      'invalid_request',
      `worker ${runtime.options.workerId} (${runtime.adapter.type}) runs no workflows: spawn a workflow worker (--type comfyui)`,
      {
        status: 404,
      },
    );
  }
  return workflows;
}

export function registerWorkflowRoutes(app: FastifyInstance, runtime: WorkerRuntime): void {
  app.post('/v1/workflows', async (request, reply) => {
    const workflows = workflowsOf(runtime);
    const body = validateBody(WorkerWorkflowRequestSchema, request.body, 'workflow request');
    runtime.assertServing();
    const started = Date.now();
    const clientGone = clientGoneSignal(reply.raw);
    const badEvent = new AbortController();
    let open = false;
    const send = (event: WorkflowEvent) => {
      if (!open) {
        open = true;
        reply.hijack();
        startSse(reply.raw);
      }
      writeSse(reply.raw, event);
    };
    const adapterName = runtime.adapter.name;
    try {
      const result = await runtime.queue.run(
        () =>
          workflows.run(
            {
              workflowId: body.workflow_id,
              workflow: body.workflow,
              signal: AbortSignal.any([clientGone, badEvent.signal]),
              onEvent: event => {
                // A plugin's events are input like any other: a bad one fails the workflow naming the plugin.
                const parsed = parseWire(WorkflowEventSchema, event, `workflow event from adapter ${adapterName}`);
                if (!parsed.ok) {
                  badEvent.abort(new RbeeError('adapter_error', parsed.message));
                } else if (!badEvent.signal.aborted) {
                  send(parsed.value);
                }
              },
            },
            runtime.context,
          ),
        clientGone,
      );
      if (badEvent.signal.aborted) {
        throw badEvent.signal.reason;
      }
      runtime.stats.recordRequest(0);
      send({type: 'done', workflow_id: body.workflow_id, outputs: result.outputs, duration_ms: Date.now() - started, at: new Date().toISOString()});
    } catch (caught) {
      const error = toRbeeError(badEvent.signal.aborted ? badEvent.signal.reason : caught, 'engine_error');
      if (!open) {
        throw error;
      }
      send({
        type: 'error',
        workflow_id: body.workflow_id,
        error: {code: error.code, message: error.message, ...(error.field === undefined ? {} : {node: error.field})},
      });
    }
    reply.raw.end();
  });

  app.get('/v1/workflows/:id/outputs/*', async (request, reply) => {
    const workflows = workflowsOf(runtime);
    const {id, '*': rest} = request.params as {id: string; '*': string};
    const file = parseOutputPath(rest);
    if (file === null) {
      throw new RbeeError('invalid_request', `invalid output path "${rest}": expected output|temp/<subfolder…>/<filename>, plain names only`, {field: 'path'});
    }
    const output = await workflows.output(id, file, runtime.context);
    return reply.type(output.contentType).send(Readable.fromWeb(output.body as NodeReadableStream<Uint8Array>));
  });

  app.delete('/v1/workflows/:id', async request => {
    const workflows = workflowsOf(runtime);
    const {id} = request.params as {id: string};
    return {workflow_id: id, result: await workflows.cancel(id, runtime.context)};
  });
}
