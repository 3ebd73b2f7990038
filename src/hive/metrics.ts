/**
 * GET /metrics in Prometheus format. Worker figures are read from the supervisor at scrape time
 * (the last heartbeat of each worker), so the hot paths only bump a few counters.
 */
import {Counter, Gauge, Histogram, Registry, collectDefaultMetrics} from 'prom-client';
import {WorkerStateSchema} from '../protocol/wire.js';
import type {Supervisor} from './supervisor.js';
import {isAlive} from './worker-record.js';

export type HiveMetrics = {
  registry: Registry;
  heartbeats: Counter<'result'>;
  requests: Counter<'route' | 'status'>;
  restarts: Counter;
  heartbeatSeconds: Histogram;
  modelStarts: Counter<'reason'>;
  modelEvictions: Counter;
  waitForModelSeconds: Histogram;
};

export function createHiveMetrics(supervisor: Supervisor): HiveMetrics {
  const registry = new Registry();
  collectDefaultMetrics({register: registry, prefix: 'rbee_hive_'});

  new Gauge({
    name: 'rbee_workers',
    help: 'Workers by state',
    labelNames: ['state'],
    registers: [registry],
    collect() {
      this.reset();
      for (const state of WorkerStateSchema.options) {
        this.set({state}, 0);
      }
      for (const record of supervisor.workers.values()) {
        this.inc({state: record.state});
      }
    },
  });

  const perWorker = (name: string, help: string, read: (heartbeat: NonNullable<ReturnType<Supervisor['get']>['lastHeartbeat']>) => number | undefined) =>
    new Gauge({
      name,
      help,
      labelNames: ['worker_id', 'model', 'device'],
      registers: [registry],
      collect() {
        this.reset();
        for (const record of supervisor.workers.values()) {
          const value = record.lastHeartbeat === null || !isAlive(record.state) ? undefined : read(record.lastHeartbeat);
          if (value !== undefined) {
            this.set({worker_id: record.id, model: record.modelName, device: record.spec.device}, value);
          }
        }
      },
    });
  perWorker('rbee_worker_requests', 'Requests a worker has answered (from its heartbeat)', heartbeat => heartbeat.requests_total);
  perWorker('rbee_worker_tokens_generated', 'Tokens a worker has generated (from its heartbeat)', heartbeat => heartbeat.tokens_generated);
  perWorker('rbee_worker_queue_depth', "Requests waiting in a worker's queue", heartbeat => heartbeat.queue_depth);
  perWorker('rbee_worker_vram_used_bytes', 'VRAM a worker uses', heartbeat => heartbeat.vram_used);
  perWorker('rbee_worker_vram_total_bytes', "VRAM of a worker's device", heartbeat => heartbeat.vram_total);
  perWorker('rbee_worker_ram_used_bytes', 'RAM a worker process uses', heartbeat => heartbeat.ram_used);
  perWorker(
    'rbee_worker_throughput_tokens_per_second',
    'Tokens per second over the last heartbeat interval',
    heartbeat => heartbeat.throughput_tokens_per_second,
  );

  return {
    registry,
    heartbeats: new Counter({name: 'rbee_heartbeats_total', help: 'Heartbeats received, by result', labelNames: ['result'], registers: [registry]}),
    requests: new Counter({
      name: 'rbee_requests_total',
      help: 'HTTP requests the hive answered, by route and status',
      labelNames: ['route', 'status'],
      registers: [registry],
    }),
    restarts: new Counter({name: 'rbee_worker_restarts_total', help: 'Worker restarts by the restart policy', registers: [registry]}),
    heartbeatSeconds: new Histogram({
      name: 'rbee_heartbeat_handling_seconds',
      help: 'Time to handle one heartbeat',
      registers: [registry],
      buckets: [0.0001, 0.0005, 0.001, 0.005, 0.01, 0.05, 0.1],
    }),
    modelStarts: new Counter({
      name: 'rbee_model_starts_total',
      help: 'Catalogue models started on demand, by reason',
      labelNames: ['reason'],
      registers: [registry],
    }),
    modelEvictions: new Counter({name: 'rbee_model_evictions_total', help: 'Idle models stopped to make room for another', registers: [registry]}),
    waitForModelSeconds: new Histogram({
      name: 'rbee_request_wait_for_model_seconds',
      help: 'How long requests for a catalogue model waited for it to serve',
      registers: [registry],
      buckets: [0.01, 0.1, 0.5, 1, 2, 5, 10, 30, 60, 120, 300],
    }),
  };
}
