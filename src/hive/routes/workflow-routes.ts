/**
 * The hive's workflow API: POST /v1/workflows goes to the least busy ready worker whose adapter
 * runs workflows (or the one named) and its SSE events are relayed as they come; the outputs and
 * DELETE go to the worker that ran it. The hive remembers which worker that was, for the latest
 * workflows only.
 */
import crypto from 'node:crypto';
import type {FastifyInstance, FastifyReply} from 'fastify';
import {RbeeError} from '../../errors.js';
import {clientGoneSignal} from '../../http/client-gone.js';
import type {HttpAnswer} from '../../http/http-request.js';
import {validateBody} from '../../http/validate-body.js';
import {parseOutputPath, WorkflowRequestSchema} from '../../protocol/wire.js';
import type {Supervisor} from '../supervisor.js';
import {isServing, type WorkerView} from '../worker-record.js';
import {workerFetch} from './inference-routes.js';
import {relayStream} from './sse-relay.js';

export type WorkflowRouteOptions = {
  /** The worker types whose adapter runs workflows. */
  workflowTypes: ReadonlySet<string>;
  log: (message: string) => void;
};

/** Workflows the hive can still find the worker of (for outputs and cancel). */
const rememberedWorkflows = 1_024;

export function registerWorkflowRoutes(app: FastifyInstance, supervisor: Supervisor, options: WorkflowRouteOptions): void {
  const ranOn = new Map<string, string>();
  let turn = 0;

  function pickWorker(named: string | undefined): WorkerView {
    const candidates = [...supervisor.workers.values()].filter(record => options.workflowTypes.has(record.spec.type ?? ''));
    if (named !== undefined) {
      const worker = supervisor.workers.get(named);
      if (worker === undefined) {
        throw new RbeeError('worker_not_found', `no worker ${named}`, {field: 'worker_id'});
      }
      if (!candidates.includes(worker)) {
        throw new RbeeError('invalid_request', `worker ${named} (${worker.spec.type ?? 'unknown type'}) runs no workflows`, {field: 'worker_id'});
      }
      if (!isServing(worker)) {
        throw new RbeeError('worker_not_ready', `worker ${named} is ${worker.draining ? 'draining' : worker.state}: it takes no workflow now`);
      }
      return worker;
    }
    const serving = candidates.filter(isServing);
    if (serving.length === 0) {
      if (candidates.some(record => record.state === 'starting')) {
        throw new RbeeError('worker_not_ready', 'the workflow worker is still starting; try again shortly');
      }
      throw new RbeeError(
        'invalid_request',
        `no ready worker runs workflows: spawn one (rbee worker spawn --type ${[...options.workflowTypes][0] ?? 'comfyui'} --model <ComfyUI folder>)`,
      );
    }
    const fewest = Math.min(...serving.map(record => record.inFlight));
    const tied = serving.filter(record => record.inFlight === fewest);
    turn = (turn + 1) % 1_000_000;
    return tied[turn % tied.length]!;
  }

  function workerOf(workflowId: string): WorkerView {
    const workerId = ranOn.get(workflowId);
    const worker = workerId === undefined ? undefined : supervisor.workers.get(workerId);
    if (worker === undefined) {
      throw new RbeeError(
        'not_found',
        workerId === undefined ? `no workflow ${workflowId} on this hive` : `workflow ${workflowId} ran on worker ${workerId}, which is gone`,
      );
    }
    return worker;
  }

  /** A worker that does not answer (gone, restarting) is the worker's failure, said so: never a bare "fetch failed". */
  async function askWorker(worker: WorkerView, path: string, method: 'GET' | 'DELETE', signal: AbortSignal): Promise<HttpAnswer> {
    try {
      return await workerFetch(worker, path, {method, signal});
    } catch (error) {
      throw new RbeeError('upstream_error', `worker ${worker.id} did not answer ${method} ${path}: ${(error as Error).message} (is it restarting?)`, {
        cause: error,
      });
    }
  }

  async function relayWhole(reply: FastifyReply, upstream: HttpAnswer): Promise<void> {
    await reply
      .status(upstream.status)
      .header('content-type', upstream.header('content-type') ?? 'application/json')
      .send(await upstream.text());
  }

  app.post('/v1/workflows', async (request, reply) => {
    const body = validateBody(WorkflowRequestSchema, request.body, 'workflow request');
    const worker = pickWorker(body.worker_id);
    const workflowId = `wf-${crypto.randomUUID()}`;
    ranOn.set(workflowId, worker.id);
    while (ranOn.size > rememberedWorkflows) {
      ranOn.delete(ranOn.keys().next().value!);
    }
    const clientGone = clientGoneSignal(reply.raw);
    const release = supervisor.requestStarted(worker.id);
    try {
      let upstream: HttpAnswer;
      try {
        upstream = await workerFetch(worker, '/v1/workflows', {
          method: 'POST',
          body: Buffer.from(JSON.stringify({workflow_id: workflowId, workflow: body.workflow})),
          signal: clientGone,
        });
      } catch (error) {
        throw new RbeeError('upstream_error', `worker ${worker.id} did not answer: ${(error as Error).message}`, {cause: error});
      }
      if (!upstream.ok) {
        await relayWhole(reply, upstream);
        return;
      }
      await relayStream(upstream, reply, {
        openAi: false,
        headers: {'x-rbee-workflow-id': workflowId},
        // A stream cut off without `done` or `error` (the worker died) never reads as a finished workflow.
        cutOff: reason => {
          const message = `worker ${worker.id}'s workflow stream ended before its end (${reason}): the worker or its engine failed`;
          options.log(message);
          return {type: 'error', workflow_id: workflowId, error: {code: 'worker_failed', message}};
        },
      });
    } finally {
      release();
    }
  });

  app.get('/v1/workflows/:id/outputs/*', async (request, reply) => {
    const {id, '*': rest} = request.params as {id: string; '*': string};
    const file = parseOutputPath(rest);
    if (file === null) {
      throw new RbeeError('invalid_request', `invalid output path "${rest}": expected output|temp/<subfolder…>/<filename>, plain names only`, {field: 'path'});
    }
    const worker = workerOf(id);
    // Rebuilt from the parsed parts, never the client's raw string.
    const parts = [file.type, ...file.subfolder.split('/').filter(part => part !== ''), file.filename].map(encodeURIComponent).join('/');
    const upstream = await workerFetch(worker, `/v1/workflows/${encodeURIComponent(id)}/outputs/${parts}`, {
      method: 'GET',
      signal: clientGoneSignal(reply.raw),
    });
    if (!upstream.ok) {
      await relayWhole(reply, upstream);
      return;
    }
    return reply
      .status(200)
      .type(upstream.header('content-type') ?? 'application/octet-stream')
      .send(upstream.body);
  });

  app.delete('/v1/workflows/:id', async (request, reply) => {
    const {id} = request.params as {id: string};
    const worker = workerOf(id);
    const upstream = await askWorker(worker, `/v1/workflows/${encodeURIComponent(id)}`, 'DELETE', AbortSignal.timeout(10_000));
    await relayWhole(reply, upstream);
  });
}
