import type {FastifyInstance} from 'fastify';
import {validateBody} from '../../http/validate-body.js';
import {SpawnGroupRequestSchema, type GroupInfo, type GroupList} from '../../protocol/wire.js';
import {isGroupOver, toGroupInfo} from '../group-record.js';
import type {Supervisor} from '../supervisor.js';

/** Worker groups: spawn (the spec's WorkerSpawnGroup), list, inspect, stop. Members also appear under /v1/workers. */
export function registerGroupRoutes(app: FastifyInstance, supervisor: Supervisor): void {
  app.post('/v1/groups', async (request, reply) => {
    const spec = validateBody(SpawnGroupRequestSchema, request.body, 'spawn-group request');
    const group = await supervisor.spawnGroup(spec);
    return reply.status(201).send(toGroupInfo(group, supervisor.workers));
  });

  app.get<{Querystring: {all?: string}}>('/v1/groups', async (request): Promise<GroupList> => {
    const all = request.query.all === '1' || request.query.all === 'true';
    const groups = [...supervisor.groups.values()].filter(group => all || !isGroupOver(group.health));
    return {groups: groups.map(group => toGroupInfo(group, supervisor.workers))};
  });

  app.get<{Params: {id: string}}>('/v1/groups/:id', async (request): Promise<GroupInfo> =>
    toGroupInfo(supervisor.getGroup(request.params.id), supervisor.workers),
  );

  app.delete<{Params: {id: string}}>('/v1/groups/:id', async (request): Promise<GroupInfo> =>
    toGroupInfo(await supervisor.stopGroup(request.params.id), supervisor.workers),
  );
}
