/**
 * The hive daemon: one fastify server (heartbeats, workers, inference, status) over a supervisor
 * of worker processes. Loopback by default; any other address needs a token.
 */
import path from 'node:path';
import Fastify, {type FastifyInstance} from 'fastify';
import {RbeeError} from '../errors.js';
import {installErrorHandling} from '../http/error-handling.js';
import type {DeviceInfo, HiveStatus, WorkerState} from '../protocol/wire.js';
import {listDevices} from './devices.js';
import {servedModels} from './router.js';
import {registerHeartbeatRoutes} from './routes/heartbeat-routes.js';
import {registerInferenceRoutes} from './routes/inference-routes.js';
import {registerWorkerRoutes} from './routes/worker-routes.js';
import {Supervisor} from './supervisor.js';

export type HiveOptions = {
  host: string;
  port: number;
  token: string | undefined;
  rbeeHome: string;
  heartbeatIntervalMs: number;
  stopGraceMs: number;
  workerDefaults: {contextSize?: number | undefined; threads?: number | undefined; parallel?: number | undefined};
  env?: NodeJS.ProcessEnv;
  log: (message: string) => void;
};

export type Hive = {
  app: FastifyInstance;
  supervisor: Supervisor;
  devices: DeviceInfo[];
  url: string;
  close(reason?: string): Promise<void>;
};

const version = '0.1.0';

export function isLoopback(host: string): boolean {
  return host === 'localhost' || host === '::1' || /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(host);
}

function bearer(header: string | undefined): string | undefined {
  const match = header === undefined ? null : /^Bearer\s+(.+)$/i.exec(header);
  return match?.[1];
}

export async function startHive(options: HiveOptions): Promise<Hive> {
  if (!isLoopback(options.host) && options.token === undefined) {
    throw new RbeeError('bind_refused', `refusing to bind ${options.host} without a token: set RBEE_TOKEN (or hive.token in rbee.config.ts), or bind 127.0.0.1`);
  }
  const devices = await listDevices();
  const app = Fastify({logger: false, bodyLimit: 8 * 1024 * 1024});
  installErrorHandling(app);
  let url = '';
  const supervisor = new Supervisor({
    hiveUrl: () => url,
    modelsDir: path.join(options.rbeeHome, 'models'),
    logsDir: path.join(options.rbeeHome, 'logs'),
    devices,
    heartbeatIntervalMs: options.heartbeatIntervalMs,
    stopGraceMs: options.stopGraceMs,
    defaults: options.workerDefaults,
    ...(options.env === undefined ? {} : {env: options.env}),
    log: options.log,
  });

  if (options.token !== undefined) {
    const token = options.token;
    app.addHook('onRequest', async request => {
      // Heartbeats authenticate with their worker's own secret instead.
      if (request.url === '/health' || request.url === '/v1/heartbeat') {
        return;
      }
      if (bearer(request.headers.authorization) !== token) {
        throw new RbeeError('unauthorized', 'missing or wrong API token: send "Authorization: Bearer <token>"');
      }
    });
  }

  const started = Date.now();
  app.get('/health', async () => ({status: 'ok', version}));
  app.get('/v1/status', async (): Promise<HiveStatus> => {
    const workers: Partial<Record<WorkerState, number>> = {};
    for (const record of supervisor.workers.values()) {
      workers[record.state] = (workers[record.state] ?? 0) + 1;
    }
    return {
      version,
      pid: process.pid,
      uptime_seconds: Math.round((Date.now() - started) / 1000),
      url,
      workers,
      models: servedModels(supervisor),
      devices,
    };
  });
  registerHeartbeatRoutes(app, supervisor);
  registerWorkerRoutes(app, supervisor);
  registerInferenceRoutes(app, supervisor);

  try {
    await app.listen({host: options.host, port: options.port});
  } catch (error) {
    await supervisor.stopAll('hive failed to start');
    if ((error as NodeJS.ErrnoException).code === 'EADDRINUSE') {
      throw new RbeeError('port_in_use', `port ${options.port} on ${options.host} is already in use (another hive?); pick another with --port`, {cause: error});
    }
    throw new RbeeError('bind_refused', `cannot bind ${options.host}:${options.port}: ${(error as Error).message}`, {cause: error});
  }
  const address = app.server.address();
  const port = typeof address === 'object' && address !== null ? address.port : options.port;
  // Workers always reach the hive over loopback, whatever address it serves clients on.
  url = `http://${isLoopback(options.host) && options.host !== '::1' ? options.host : '127.0.0.1'}:${port}`;

  return {
    app,
    supervisor,
    devices,
    url,
    async close(reason = 'hive stopping') {
      await supervisor.stopAll(reason);
      await app.close();
    },
  };
}
