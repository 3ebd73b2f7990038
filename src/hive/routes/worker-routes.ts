import type {FastifyInstance} from 'fastify';
import {validateBody} from '../../http/validate-body.js';
import {RbeeError} from '../../errors.js';
import {HiveCommandSchema, SpawnWorkerRequestSchema, type WorkerInfo, type WorkerKey, type WorkerList} from '../../protocol/wire.js';
import type {Supervisor} from '../supervisor.js';
import type {RelayedTokens} from '../relayed-tokens.js';
import {isAlive, toWorkerInfo, workerKey, workerUrl, type WorkerView} from '../worker-record.js';

export function registerWorkerRoutes(app: FastifyInstance, supervisor: Supervisor, relayed: RelayedTokens): void {
  const info = (record: WorkerView): WorkerInfo => toWorkerInfo(record, relayed.of(record.id));
  app.post('/v1/workers', async (request, reply) => {
    const spec = validateBody(SpawnWorkerRequestSchema, request.body, 'spawn request');
    const result = await supervisor.spawn(spec);
    return 'dry_run' in result ? result : reply.status(201).send(info(result));
  });

  app.get<{Querystring: {all?: string}}>('/v1/workers', async (request): Promise<WorkerList> => {
    const all = request.query.all === '1' || request.query.all === 'true';
    const records = [...supervisor.workers.values()].filter(record => all || isAlive(record.state));
    return {workers: records.map(info)};
  });

  app.get<{Params: {id: string}}>('/v1/workers/:id', async (request): Promise<WorkerInfo> => info(supervisor.get(request.params.id)));

  // Behind the API token like every route: a client the hive lets in may reach the worker directly.
  app.get<{Params: {id: string}}>('/v1/workers/:id/key', async (request): Promise<WorkerKey> => {
    const record = supervisor.get(request.params.id);
    const key = workerKey(record);
    if (key === null || !isAlive(record.state)) {
      throw new RbeeError(
        'worker_not_ready',
        `worker ${record.id} is ${record.state}${key === null ? ' and has not heartbeated since the hive restarted' : ''}: no key to give`,
      );
    }
    return {worker_id: record.id, url: workerUrl(record), key};
  });

  app.delete<{Params: {id: string}}>('/v1/workers/:id', async (request): Promise<WorkerInfo> => info(await supervisor.stop(request.params.id)));

  // Delivered with the worker's next heartbeat answer, as the spec's `commands`.
  app.post<{Params: {id: string}}>('/v1/workers/:id/commands', async (request, reply) => {
    const command = validateBody(HiveCommandSchema, request.body, 'worker command');
    return reply.status(202).send(info(supervisor.command(request.params.id, command)));
  });
}
