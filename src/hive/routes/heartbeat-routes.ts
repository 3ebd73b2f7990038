import type {FastifyInstance} from 'fastify';
import {RbeeError} from '../../errors.js';
import {validateBody} from '../../http/validate-body.js';
import {HeartbeatSchema, type HeartbeatAnswer} from '../../protocol/wire.js';
import {workerSecretHeader} from '../../worker/heartbeat-loop.js';
import type {EventStream} from '../event-stream.js';
import type {HiveMetrics} from '../metrics.js';
import type {Supervisor} from '../supervisor.js';
import {hasSecret} from '../worker-record.js';

export function registerHeartbeatRoutes(app: FastifyInstance, supervisor: Supervisor, metrics: HiveMetrics, events: EventStream): void {
  app.post('/v1/heartbeat', async (request): Promise<HeartbeatAnswer> => {
    const timer = metrics.heartbeatSeconds.startTimer();
    let result = 'invalid';
    try {
      const heartbeat = validateBody(HeartbeatSchema, request.body, 'heartbeat');
      const record = supervisor.workers.get(heartbeat.worker_id);
      if (record === undefined) {
        result = 'unknown_worker';
        throw new RbeeError('worker_not_found', `heartbeat from unknown worker "${heartbeat.worker_id}"`);
      }
      const secret = request.headers[workerSecretHeader];
      if (!hasSecret(record, typeof secret === 'string' ? secret : undefined)) {
        result = 'bad_secret';
        throw new RbeeError('unauthorized', `heartbeat for "${heartbeat.worker_id}" does not carry that worker's secret`);
      }
      // A re-adopted worker's secret was known only by its hash: its key to the worker port comes from it.
      record.secret ??= secret as string;
      record.lastHeartbeat = heartbeat;
      record.lastHeartbeatAt = new Date();
      supervisor.onHeartbeat(record);
      events.publish({type: 'heartbeat', at: record.lastHeartbeatAt.toISOString(), worker_id: record.id, heartbeat});
      result = 'accepted';
      return {ack: true, commands: supervisor.takeCommands(record)};
    } finally {
      metrics.heartbeats.inc({result});
      timer();
    }
  });
}
