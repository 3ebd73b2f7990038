import type {FastifyInstance} from 'fastify';
import {RbeeError} from '../../errors.js';
import {validateBody} from '../../http/validate-body.js';
import {HeartbeatSchema, type HeartbeatAnswer, type HiveCommand} from '../../protocol/wire.js';
import {workerSecretHeader} from '../../worker/heartbeat-loop.js';
import type {Supervisor} from '../supervisor.js';

export function registerHeartbeatRoutes(app: FastifyInstance, supervisor: Supervisor): void {
  app.post('/v1/heartbeat', async (request): Promise<HeartbeatAnswer> => {
    const heartbeat = validateBody(HeartbeatSchema, request.body, 'heartbeat');
    const record = supervisor.workers.get(heartbeat.worker_id);
    if (record === undefined) {
      throw new RbeeError('worker_not_found', `heartbeat from unknown worker "${heartbeat.worker_id}"`);
    }
    const secret = request.headers[workerSecretHeader];
    if (!supervisor.verifySecret(record, typeof secret === 'string' ? secret : undefined)) {
      throw new RbeeError('unauthorized', `heartbeat for "${heartbeat.worker_id}" does not carry that worker's secret`);
    }
    record.lastHeartbeat = heartbeat;
    record.lastHeartbeatAt = new Date();
    const commands: HiveCommand[] = [];
    if (record.state === 'failed' || record.state === 'stopped') {
      // The hive has given up on this worker (e.g. it went silent): it must not linger.
      commands.push({type: 'shutdown', reason: record.reason ?? record.state});
    } else if (heartbeat.status === 'error') {
      supervisor.fail(record, heartbeat.error ?? 'worker reported an error');
    } else if (record.state !== 'stopping' && (heartbeat.status === 'ready' || heartbeat.status === 'busy')) {
      record.state = heartbeat.status;
      record.progress = null;
    }
    return {ack: true, commands};
  });
}
