import type {FastifyInstance} from 'fastify';
import {RbeeError} from '../../errors.js';
import {validateBody} from '../../http/validate-body.js';
import {HeartbeatSchema, type HeartbeatAnswer} from '../../protocol/wire.js';
import {workerSecretHeader} from '../../worker/heartbeat-loop.js';
import type {EventStream} from '../event-stream.js';
import type {HiveMetrics} from '../metrics.js';
import type {Supervisor} from '../supervisor.js';

export function registerHeartbeatRoutes(app: FastifyInstance, supervisor: Supervisor, metrics: HiveMetrics, events: EventStream): void {
  app.post('/v1/heartbeat', async (request): Promise<HeartbeatAnswer> => {
    const timer = metrics.heartbeatSeconds.startTimer();
    let result = 'invalid';
    try {
      const heartbeat = validateBody(HeartbeatSchema, request.body, 'heartbeat');
      const secret = request.headers[workerSecretHeader];
      let answer: ReturnType<Supervisor['heartbeat']>;
      try {
        answer = supervisor.heartbeat(heartbeat, typeof secret === 'string' ? secret : undefined);
      } catch (error) {
        result =
          error instanceof RbeeError && error.code === 'worker_not_found'
            ? 'unknown_worker'
            : error instanceof RbeeError && error.code === 'unauthorized'
              ? 'bad_secret'
              : 'invalid';
        throw error;
      }
      events.publish({type: 'heartbeat', at: answer.worker.lastHeartbeatAt!.toISOString(), worker_id: answer.worker.id, heartbeat});
      result = 'accepted';
      return {ack: true, commands: answer.commands};
    } finally {
      metrics.heartbeats.inc({result});
      timer();
    }
  });
}
