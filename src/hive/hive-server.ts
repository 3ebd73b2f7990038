/**
 * The hive daemon: one fastify server (heartbeats, workers, inference, status) over a supervisor
 * of worker processes. Loopback by default; any other address needs a token.
 */
import {rbeeVersion} from '../version.js';
import path from 'node:path';
import Fastify, {type FastifyInstance} from 'fastify';
import {RbeeError} from '../errors.js';
import {adapterBackends} from '../adapters/adapter-backends.js';
import {frameworkErrorHandler, installErrorHandling} from '../http/error-handling.js';
import {isLoopback} from '../http/loopback.js';
import {checkApiToken} from '../config/api-token.js';
import {bearer, sameSecret} from '../http/secrets.js';
import {ensurePrivateDir, narrowTree} from '../config/private-home.js';
import {lockHome, type HomeLock} from './home-lock.js';
import type {CatalogueList, DeviceInfo, HiveStatus, WorkerState} from '../protocol/wire.js';
import {listDevices} from './devices.js';
import {servedModels} from './router.js';
import {registerHeartbeatRoutes} from './routes/heartbeat-routes.js';
import {registerInferenceRoutes} from './routes/inference-routes.js';
import {WorkerLinks} from './worker-links.js';
import {envFlag} from '../config/env.js';
import {registerWorkerRoutes} from './routes/worker-routes.js';
import {registerWorkflowRoutes} from './routes/workflow-routes.js';
import {Supervisor, workerEnvironment} from './supervisor.js';
import {SpareWorkers} from './spare-workers.js';
import {EventStream} from './event-stream.js';
import {toWorkerInfo} from './worker-record.js';
import {RelayedTokens} from './relayed-tokens.js';
import {toGroupInfo} from './group-record.js';
import {registerGroupRoutes} from './routes/group-routes.js';
import {StateStore} from './state-store.js';
import {createHiveMetrics, type HiveMetrics} from './metrics.js';
import {ModelsOnDemand, type OnDemandSettings} from './models-on-demand.js';
import type {CatalogueEntry} from '../config/schema.js';
import type {RestartLimits} from './restart-policy.js';
import type {AdapterSet} from '../adapters/load-adapters.js';
import {defaults} from '../config/limits.js';

export type HiveOptions = {
  host: string;
  port: number;
  token: string | undefined;
  rbeeHome: string;
  heartbeatIntervalMs: number;
  /** Workers exit when the hive has not answered them for this long; a restarted hive must be back sooner. */
  orphanTimeoutMs?: number | undefined;
  /** Heartbeat intervals a worker may miss before it is failed (default 3). */
  missedHeartbeats?: number | undefined;
  loadStallTimeoutMs?: number | undefined;
  /** How long a worker may leave a request unanswered before the hive checks it is alive (then retries elsewhere). */
  workerTimeoutMs?: number | undefined;
  /** Folders model files must lie in; undefined: any readable file on a loopback hive, RBEE_HOME/models otherwise. */
  modelDirs?: string[] | undefined;
  restartLimits?: RestartLimits | undefined;
  stopGraceMs: number;
  /** The adapters this hive offers (built-in and plugins) and the plugins that failed to load. */
  adapters: AdapterSet;
  /** Passed on to workers, which load their adapter plugins from it. */
  configPath: string | null;
  workerDefaults: {contextSize?: number | undefined; threads?: number | undefined; parallel?: number | undefined; readyTimeoutMs?: number | undefined};
  env?: NodeJS.ProcessEnv;
  log: (message: string) => void;
  /** Models on demand: the config's catalogue and its hive-wide settings. */
  catalogue?: Readonly<Record<string, CatalogueEntry>> | undefined;
  onDemand?: Partial<OnDemandSettings> | undefined;
  /** Keep a booted worker process ready per worker type in use, so a spawn skips the process's own start (default: true). */
  spareWorkers?: boolean | undefined;
};

export type Hive = {
  app: FastifyInstance;
  supervisor: Supervisor;
  devices: DeviceInfo[];
  url: string;
  adopted: string[];
  close(reason?: string): Promise<void>;
  /** Settles once the hive has closed, by close() or by POST /v1/shutdown. */
  closed: Promise<void>;
};

const version = rbeeVersion;

export async function startHive(options: HiveOptions): Promise<Hive> {
  if (!isLoopback(options.host) && options.token === undefined) {
    throw new RbeeError(
      'bind_refused',
      `refusing to bind ${options.host} without a token: set RBEE_TOKEN (or hive.token in rbee.config.ts), or bind 127.0.0.1`,
    );
  }
  if (options.token !== undefined) {
    checkApiToken(options.token, "the hive's token");
  }
  // The home is locked before anything in it is read or written: a second hive touches nothing.
  ensurePrivateDir(options.rbeeHome);
  const lock = lockHome(options.rbeeHome);
  try {
    return await startLockedHive(options, lock);
  } catch (error) {
    lock.release();
    throw error;
  }
}

/** A catalogue entry naming a worker type no loaded adapter offers is a config error, found at start, not at the first request. */
function checkCatalogueTypes(catalogue: Readonly<Record<string, CatalogueEntry>>, types: string[], configPath: string | null): void {
  for (const [name, entry] of Object.entries(catalogue)) {
    if (entry.type !== undefined && !types.includes(entry.type)) {
      throw new RbeeError(
        'invalid_request',
        `invalid config ${configPath ?? ''}: \`models.${name}.type\`: unknown worker type "${entry.type}"; available types are ${types.join(', ')}`,
        {
          field: `models.${name}.type`,
        },
      );
    }
  }
}

async function startLockedHive(options: HiveOptions, lock: HomeLock): Promise<Hive> {
  narrowTree(options.rbeeHome);
  const devices = await listDevices();
  const app = Fastify({logger: false, bodyLimit: 8 * 1024 * 1024, frameworkErrors: frameworkErrorHandler});
  installErrorHandling(app);
  // Opened on first use, after the port is bound: a start that fails to bind writes nothing.
  const store = new StateStore(path.join(options.rbeeHome, 'hive.sqlite'));
  let url = '';
  let metrics: HiveMetrics | null = null;
  const events = new EventStream();
  // Its `known` runs only after the supervisor exists (when a worker's first tokens are counted).
  const relayed: RelayedTokens = new RelayedTokens(id => supervisor.workers.has(id));
  const modelsDir = path.join(options.rbeeHome, 'models');
  const logsDir = path.join(options.rbeeHome, 'logs');
  // Links are the fast path of generation requests; HTTP serves them too (and everything else).
  const linksDir = envFlag('RBEE_NO_WORKER_LINKS', options.env ?? process.env) ? null : path.join(options.rbeeHome, 'links');
  if (linksDir !== null) {
    ensurePrivateDir(linksDir, "the workers' links folder");
  }
  const links = linksDir === null ? undefined : new WorkerLinks(linksDir);
  const spares =
    options.spareWorkers === false
      ? undefined
      : new SpareWorkers({logsDir, env: workerEnvironment(options.env ?? process.env), configPath: options.configPath, log: options.log});
  // Made after the supervisor (it asks it to spawn); the supervisor asks it whether requests are held.
  let onDemandRef: ModelsOnDemand | null = null;
  const supervisor = new Supervisor({
    hiveUrl: () => url,
    modelsDir,
    workerTypes: options.adapters.adapters.map(loaded => loaded.adapter.type),
    groupTypes: options.adapters.adapters.filter(loaded => loaded.adapter.groups === true).map(loaded => loaded.adapter.type),
    checkGroup: {
      types: options.adapters.adapters.filter(loaded => loaded.adapter.checkGroup !== undefined).map(loaded => loaded.adapter.type),
      check: async (type, modelPath, devices) => {
        await options.adapters.adapters.find(loaded => loaded.adapter.type === type)?.adapter.checkGroup?.({modelPath, devices});
      },
    },
    workerTypeSupport: async spawnOptions =>
      Promise.all(
        options.adapters.adapters.map(async loaded => {
          // Options the adapter refuses fall back to its configured self here: checkAdapterOptions names them next.
          const adapter =
            spawnOptions?.type === loaded.adapter.type ? await loaded.withOptions(spawnOptions.adapterOptions).catch(() => loaded.adapter) : loaded.adapter;
          return {type: loaded.adapter.type, backends: await adapterBackends(adapter)};
        }),
      ),
    modelFormats: Object.fromEntries(options.adapters.adapters.map(loaded => [loaded.adapter.type, loaded.adapter.modelFormat ?? 'gguf'])),
    engineModelTypes: options.adapters.adapters.flatMap(loaded => (loaded.adapter.engineModels === true ? [loaded.adapter.type] : [])),
    engineOptions: Object.fromEntries(
      options.adapters.adapters.flatMap(loaded => (loaded.adapter.engineOption === undefined ? [] : [[loaded.adapter.type, loaded.adapter.engineOption]])),
    ),
    checkAdapterOptions: async (type, adapterOptions) => {
      await options.adapters.adapters.find(loaded => loaded.adapter.type === type)?.withOptions(adapterOptions);
    },
    configPath: options.configPath,
    logsDir,
    linksDir,
    spares,
    requestsHeld: () => onDemandRef?.holding() ?? false,
    allowedModelDirs: options.modelDirs ?? (isLoopback(options.host) ? null : [modelsDir]),
    devices,
    heartbeatIntervalMs: options.heartbeatIntervalMs,
    missedHeartbeats: options.missedHeartbeats ?? defaults.missedHeartbeats,
    orphanTimeoutMs: options.orphanTimeoutMs ?? (options.missedHeartbeats ?? defaults.missedHeartbeats) * options.heartbeatIntervalMs,
    loadStallTimeoutMs: options.loadStallTimeoutMs ?? defaults.loadStallTimeoutMs,
    stopGraceMs: options.stopGraceMs,
    ...(options.restartLimits === undefined ? {} : {restartLimits: options.restartLimits}),
    defaults: options.workerDefaults,
    store,
    ...(options.env === undefined ? {} : {env: options.env}),
    log: options.log,
    onEvent: event => {
      if (event.type === 'group') {
        events.publish({type: 'group', at: new Date().toISOString(), change: event.change, group: toGroupInfo(event.group, supervisor.workers)});
        return;
      }
      if (event.type === 'restart') {
        metrics?.restarts.inc();
      }
      const change = event.type === 'restart' ? 'restarting' : event.type;
      events.publish({type: 'worker', at: new Date().toISOString(), change, worker: toWorkerInfo(event.record, relayed.of(event.record.id))});
    },
  });
  metrics = createHiveMetrics(supervisor);
  const hiveMetrics = metrics;
  const catalogue = options.catalogue ?? {};
  checkCatalogueTypes(
    catalogue,
    options.adapters.adapters.map(loaded => loaded.adapter.type),
    options.configPath,
  );
  const onDemand = new ModelsOnDemand({
    supervisor,
    catalogue,
    devices,
    settings: {
      maxLoadedModels: options.onDemand?.maxLoadedModels ?? null,
      vramHeadroom: options.onDemand?.vramHeadroom ?? defaults.vramHeadroom,
      idleTimeoutMs: options.onDemand?.idleTimeoutMs ?? defaults.idleTimeoutMs,
      startTimeoutMs: options.onDemand?.startTimeoutMs ?? defaults.modelStartTimeoutMs,
    },
    publish: event => events.publish(event),
    metrics: {
      started: reason => hiveMetrics.modelStarts.inc({reason}),
      evicted: () => hiveMetrics.modelEvictions.inc(),
      waited: seconds => hiveMetrics.waitForModelSeconds.observe(seconds),
    },
    log: options.log,
  });
  onDemandRef = onDemand;
  if (options.token !== undefined) {
    const token = options.token;
    app.addHook('onRequest', async request => {
      // Heartbeats authenticate with their worker's own secret instead.
      if (request.url === '/health' || request.url === '/v1/heartbeat') {
        return;
      }
      if (!sameSecret(bearer(request.headers.authorization), token)) {
        throw new RbeeError('unauthorized', 'missing or wrong API token: send "Authorization: Bearer <token>"');
      }
    });
  }

  app.addHook('onResponse', async (request, reply) => {
    hiveMetrics.requests.inc({route: request.routeOptions.url ?? 'unmatched', status: String(reply.statusCode)});
  });

  let closing: Promise<void> | null = null;
  let markClosed: () => void = () => undefined;
  const closed = new Promise<void>(resolve => {
    markClosed = resolve;
  });
  const close = (reason = 'hive stopping'): Promise<void> => {
    closing ??= (async () => {
      onDemand.close();
      await supervisor.stopAll(reason);
      events.close();
      await app.close();
      links?.close();
      store.close();
      lock.release();
      markClosed();
    })();
    return closing;
  };

  const started = Date.now();
  app.get('/health', async () => ({status: 'ok', version}));
  app.get('/metrics', async (_request, reply) => reply.header('content-type', hiveMetrics.registry.contentType).send(await hiveMetrics.registry.metrics()));
  app.post('/v1/shutdown', async (_request, reply) => {
    // Answer first: the caller learns the hive is stopping, then the workers are stopped.
    setImmediate(() => void close('hive stopped by request'));
    return reply.status(202).send({status: 'stopping'});
  });
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
      spares: spares?.list() ?? [],
    };
  });
  app.get('/v1/catalogue', async (): Promise<CatalogueList> => onDemand.list());
  app.get('/v1/adapters', async () => ({
    adapters: options.adapters.adapters.map(loaded => ({
      name: loaded.adapter.name,
      type: loaded.adapter.type,
      description: loaded.adapter.description ?? null,
      source: loaded.source,
      built_in: loaded.builtIn,
    })),
    errors: options.adapters.errors,
  }));
  events.register(app, () => ({
    type: 'snapshot',
    at: new Date().toISOString(),
    hive: {url, pid: process.pid, version},
    workers: [...supervisor.workers.values()].map(record => toWorkerInfo(record, relayed.of(record.id))),
    groups: [...supervisor.groups.values()].map(group => toGroupInfo(group, supervisor.workers)),
  }));
  registerHeartbeatRoutes(app, supervisor, hiveMetrics, events);
  registerWorkerRoutes(app, supervisor, relayed);
  registerGroupRoutes(app, supervisor);
  registerWorkflowRoutes(app, supervisor, {
    workflowTypes: new Set(options.adapters.adapters.filter(loaded => loaded.adapter.workflows !== undefined).map(loaded => loaded.adapter.type)),
    log: options.log,
  });
  registerInferenceRoutes(app, supervisor, {
    workerTimeoutMs: options.workerTimeoutMs ?? defaults.workerTimeoutMs,
    log: options.log,
    events: {active: () => events.clients > 0, publish: event => events.publish(event)},
    onDemand,
    relayed,
    links,
  });

  try {
    await app.listen({host: options.host, port: options.port});
  } catch (error) {
    // Nothing was adopted nor written yet: the caller releases the home and exits at once.
    onDemand.close();
    await supervisor.stopAll('hive could not bind');
    events.close();
    store.close();
    if ((error as NodeJS.ErrnoException).code === 'EADDRINUSE') {
      throw new RbeeError('port_in_use', `port ${options.port} on ${options.host} is already in use (another hive?); pick another with --port`, {cause: error});
    }
    throw new RbeeError('bind_refused', `cannot bind ${options.host}:${options.port}: ${(error as Error).message}`, {cause: error});
  }
  const address = app.server.address();
  const port = typeof address === 'object' && address !== null ? address.port : options.port;
  // Workers always reach the hive over loopback, whatever address it serves clients on.
  url = `http://${isLoopback(options.host) && options.host !== '::1' ? options.host : '127.0.0.1'}:${port}`;
  lock.setUrl(url);
  // Adopted only now that this hive holds the home and its port; no request is handled before this runs.
  const {adopted, failed} = supervisor.adoptFromStore();
  if (adopted.length > 0 || failed.length > 0) {
    options.log(
      `re-adopted ${adopted.length} worker(s) left by the previous hive${failed.length > 0 ? `; ${failed.length} were gone and are marked failed` : ''}`,
    );
  }
  const strays = spares?.killStrays(new Set(adopted)) ?? [];
  if (strays.length > 0) {
    options.log(`killed ${strays.length} spare worker process(es) a previous hive left: ${strays.join(', ')}`);
  }
  // The catalogue's types will be needed: their spares start now, while nothing else runs.
  for (const entry of Object.values(catalogue)) {
    if (entry.type !== undefined && entry.group === undefined) {
      supervisor.wantSpare(entry.type);
    }
  }

  return {app, supervisor, devices, url, adopted, close, closed};
}
