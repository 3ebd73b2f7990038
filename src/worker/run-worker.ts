/**
 * A worker process from start to exit: heartbeat at once, start the adapter's engine and, while it
 * starts, serve HTTP (health says "starting"); wait until the engine is ready, obey the hive's
 * commands, and exit cleanly on SIGTERM or when the hive is gone, engines included, so no worker
 * outlives its owner holding memory.
 */
import {defaults} from '../config/limits.js';
import type {AdapterContext, RbeeAdapter} from '../adapters/adapter-api.js';
import {spawnEngineProcess, stopAllEngines} from '../adapters/engine-process.js';
import {RbeeError, toRbeeError} from '../errors.js';
import {freePort} from '../http/free-port.js';
import {randomSecret} from '../http/secrets.js';
import type {GroupMembership, HiveCommand} from '../protocol/wire.js';
import {adapterGroup} from './group-heartbeat.js';
import {startHeartbeatLoop, type HeartbeatLoop} from './heartbeat-loop.js';
import {WorkerRuntime} from './worker-runtime.js';
import {traceStartup} from '../startup-trace.js';

export type WorkerOptions = {
  workerId: string;
  modelPath: string;
  modelName: string;
  device: string;
  host: string;
  port: number;
  hiveUrl: string | undefined;
  secret: string;
  /** What the worker's HTTP server demands of every request; null: standalone, loopback only. */
  key: string | null;
  /** The Unix socket of the hive's link (worker-link.ts), when the hive gave one. */
  link?: string | undefined;
  /** A coordinator's keys to its shards' ports, by worker id. */
  shardKeys?: Record<string, string> | undefined;
  /** The group launch's shared secret (RBEE_GROUP_SECRET), for the adapter's own rank connections. */
  groupSecret?: string | undefined;
  heartbeatIntervalMs: number;
  orphanTimeoutMs: number;
  contextSize: number;
  threads: number | undefined;
  parallel: number;
  maxQueue: number;
  drainTimeoutMs: number;
  /** How long start plus ready may take in all (undefined: the adapter's `readyTimeoutMs`, else 10 min). */
  readyTimeoutMs?: number | undefined;
  /** Set for a member of a worker group: its role and, for a coordinator, its shards. */
  group?: GroupMembership | undefined;
};

const log = (message: string) => process.stderr.write(`[worker] ${message}\n`);

/**
 * How often `ready()` is asked while the engine loads. A ready() is one loopback request (or a
 * flag), and every ms between the engine serving and the worker noticing is start-up time a user
 * waits for: 25 ms, not 200 (which cost 100 ms of each spawn on average).
 */
const readyPollMs = 25;
/** How long an engine failure's report waits for the requests in flight to be answered. */
const failureReportWaitMs = 2_000;
/** An engine that is not ready after this long, however much it logs, has failed to start. */
export const defaultReadyTimeoutMs = defaults.readyTimeoutMs;

export async function runWorker(options: WorkerOptions, adapter: RbeeAdapter): Promise<void> {
  let runtime: WorkerRuntime | null = null;
  /** Cuts the wait between two `ready()` calls short: set while the worker waits. */
  let wakeReadyWait: (() => void) | null = null;
  /** The engine works on its own from here: its start has returned (or failed), or it reports load progress. */
  let markUnderway: () => void = () => undefined;
  const underway = new Promise<void>(resolve => {
    markUnderway = resolve;
  });
  const context: AdapterContext = {
    workerId: options.workerId,
    modelPath: options.modelPath,
    modelName: options.modelName,
    device: options.device,
    contextSize: options.contextSize,
    threads: options.threads,
    parallel: options.parallel,
    log: message => {
      log(`${adapter.name}: ${message}`);
      // The adapter's own steps on the start-up timeline (paths and numbers left out: one step name per kind of line).
      if (runtime?.ready !== true) {
        traceStartup(options.workerId, `${adapter.name}: ${message.replace(/\/\S+/g, '…').replace(/\d+/g, 'N').slice(0, 80)}`);
      }
    },
    freePort: () => freePort(),
    engineKey: randomSecret(),
    spawnEngine: spawn => {
      const engine = spawnEngineProcess({
        ...spawn,
        // Output is not progress: an engine can log forever and never serve. Progress is only what
        // the adapter reports; the ready timeout bounds the rest.
        onOutput: line => process.stderr.write(`[engine] ${line}\n`),
      });
      traceStartup(options.workerId, `engine spawned (${spawn.command.split('/').pop() ?? spawn.command})`);
      return engine;
    },
    reportLoadProgress: fraction => {
      traceStartup(options.workerId, `load progress ${Math.round(fraction * 100)} %`);
      runtime?.setLoadProgress(fraction);
      markUnderway();
      // Progress is when an engine may have become ready (a load ends at 1): ask now, not at the next poll.
      wakeReadyWait?.();
    },
    reportFailure: reason => {
      runtime?.fail(reason);
      void reportFailureNow();
    },
    ...(options.group === undefined ? {} : {group: adapterGroup(options.group, options.groupSecret)}),
  };
  runtime = new WorkerRuntime(
    {
      workerId: options.workerId,
      modelName: options.modelName,
      device: options.device,
      parallel: options.parallel,
      maxQueue: options.maxQueue,
      group: options.group,
      shardKeys: options.shardKeys ?? {},
      groupProbeTimeoutMs: Math.max(50, Math.min(1_500, Math.floor(options.heartbeatIntervalMs / 3))),
      engineReportTimeoutMs: Math.max(100, Math.min(2_500, Math.floor(options.heartbeatIntervalMs / 2))),
    },
    adapter,
    context,
  );
  const worker = runtime;
  let server: {close(): Promise<unknown>} | null = null;
  let link: {close(): Promise<unknown>} | null = null;
  let heartbeat: HeartbeatLoop | null = null;
  let exiting = false;

  async function shutdown(reason: string, code = 0): Promise<void> {
    if (exiting) {
      return;
    }
    exiting = true;
    log(`stopping (${reason})`);
    traceStartup(options.workerId, 'stopping');
    worker.markStopping();
    const timeout = new Promise(resolve => setTimeout(resolve, options.drainTimeoutMs).unref());
    await Promise.race([worker.queue.idle(), timeout]);
    traceStartup(options.workerId, 'stopping: drained');
    await heartbeat?.beatNow();
    heartbeat?.stop();
    traceStartup(options.workerId, 'stopping: last heartbeat answered');
    await Promise.all([server?.close().catch(() => undefined), link?.close()]);
    traceStartup(options.workerId, 'stopping: http server closed');
    await adapter.stop(context).catch(error => log(`${adapter.name} stop failed: ${(error as Error).message}`));
    await stopAllEngines(3_000);
    traceStartup(options.workerId, 'stopping: engine stopped');
    process.exit(code);
  }

  function obey(commands: HiveCommand[]): void {
    for (const command of commands) {
      if (command.type === 'shutdown') {
        void shutdown(`hive asked: ${command.reason ?? 'shutdown'}`);
      } else if (command.type === 'drain') {
        log(`draining (${command.reason ?? 'hive asked'})`);
        worker.queue.drain();
      } else if (adapter.unloadModel !== undefined) {
        // A multi-model engine frees the one model and goes on serving the others (and this one, on demand).
        const model = command.model;
        adapter.unloadModel(model, context).then(
          () => log(`unloaded ${model} (hive asked)`),
          (error: unknown) => log(`unloading ${model} failed: ${(error as Error).message}`),
        );
      } else if (command.model === options.modelName || command.model === options.modelPath) {
        // A single-model worker unloads its model by ending: its memory goes back to the device.
        void shutdown(`hive asked to unload ${command.model}`);
      }
    }
  }

  /**
   * Tells the hive of an engine failure now rather than at the next heartbeat, but only once the
   * requests in flight have had their answer (an engine_error): the hive kills a failed worker's
   * process group, and a client must not get a reset connection instead. Bounded: a request stuck
   * on a dead engine does not hold the report back for long.
   */
  async function reportFailureNow(): Promise<void> {
    await Promise.race([worker.queue.idle(), new Promise(resolve => setTimeout(resolve, failureReportWaitMs).unref())]);
    await new Promise(resolve => setTimeout(resolve, 100).unref());
    await heartbeat?.beatNow();
  }

  process.on('SIGTERM', () => void shutdown('SIGTERM'));
  process.on('SIGINT', () => void shutdown('SIGINT'));

  // Heartbeats need no HTTP server: the hive hears of the worker (and of its load's progress) from the start.
  if (options.hiveUrl !== undefined) {
    heartbeat = startHeartbeatLoop({
      hiveUrl: options.hiveUrl,
      secret: options.secret,
      intervalMs: options.heartbeatIntervalMs,
      orphanTimeoutMs: options.orphanTimeoutMs,
      payload: () => worker.heartbeat(),
      onCommands: obey,
      onOrphaned: () => void shutdown(`no answer from the hive for ${options.orphanTimeoutMs} ms`),
      log,
    });
  }
  // The engine starts first; the worker's HTTP server comes up once the engine is under way. Its
  // framework takes a few hundred ms of this thread to import on a busy machine: spent while the
  // engine works on its own (a process starting, a model loading), not while it waits for this
  // thread to take its next step.
  const startup = startEngine();
  await underway;
  try {
    const {createWorkerServer} = await import('./worker-server.js');
    const app = createWorkerServer(worker, {key: options.key});
    server = app;
    await app.listen({host: options.host, port: options.port});
    traceStartup(options.workerId, 'http server listening');
    if (options.link !== undefined && options.key !== null) {
      link = await serveLink(options.link, options.key);
    }
  } catch (error) {
    const reason = `cannot serve on ${options.host}:${options.port}: ${(error as Error).message}`;
    worker.fail(reason);
    log(reason);
    await shutdown(reason, 1);
    return;
  }
  const started = await startup;
  if (!started) {
    await heartbeat?.beatNow();
    await shutdown('engine start failed', 1);
    return;
  }
  await heartbeat?.beatNow();
  traceStartup(options.workerId, 'ready heartbeat answered');

  /** The hive's link, or null (logged) when it cannot be served: the hive then uses the HTTP port. */
  async function serveLink(socketPath: string, key: string): Promise<{close(): Promise<unknown>} | null> {
    const [{serveWorkerLink}, {inferenceHandlers}] = await Promise.all([import('./worker-link.js'), import('./inference-handlers.js')]);
    const handlers = inferenceHandlers(worker);
    try {
      const served = await serveWorkerLink(
        socketPath,
        key,
        (path, body, answer) => {
          traceStartup(options.workerId, 'request came by the hive link');
          return handlers[path](body, answer);
        },
        log,
      );
      traceStartup(options.workerId, 'hive link listening');
      return served;
    } catch (error) {
      log(`cannot serve the hive's link on ${socketPath} (${(error as Error).message}): requests come by HTTP`);
      return null;
    }
  }

  /** The adapter's start, then `ready()` until it says yes; false (the worker failed) if it never does. */
  async function startEngine(): Promise<boolean> {
    const readyTimeoutMs = options.readyTimeoutMs ?? adapter.readyTimeoutMs ?? defaultReadyTimeoutMs;
    const readyBy = Date.now() + readyTimeoutMs;
    try {
      const notReady = () => notReadyError(readyTimeoutMs);
      traceStartup(options.workerId, 'adapter start called');
      await withReadyTimeout(adapter.start(context), readyTimeoutMs, notReady).finally(markUnderway);
      traceStartup(options.workerId, 'adapter start returned');
      while (adapter.ready !== undefined && !(await withReadyTimeout(adapter.ready(context), readyBy - Date.now(), notReady))) {
        if (exiting) {
          return true;
        }
        if (Date.now() >= readyBy) {
          throw notReady();
        }
        await readyWait();
      }
      worker.markReady();
      traceStartup(options.workerId, 'engine ready');
      log(`ready: ${options.modelName} on ${options.device} (${adapter.name}), http://${options.host}:${options.port}`);
      return true;
    } catch (error) {
      const rbeeError = toRbeeError(error, 'engine_error');
      worker.fail(`adapter ${adapter.name} failed to start: ${rbeeError.message}`);
      log(`failed to start ${adapter.name}: ${rbeeError.message}`);
      return false;
    }
  }

  /** `readyPollMs`, or less when the adapter reports progress meanwhile. */
  function readyWait(): Promise<void> {
    return new Promise(resolve => {
      const timer = setTimeout(done, readyPollMs);
      function done(): void {
        clearTimeout(timer);
        wakeReadyWait = null;
        resolve();
      }
      // After the adapter's own pending callbacks, so a flag it sets right after reporting is seen.
      wakeReadyWait = () => setImmediate(done);
    });
  }
}

function notReadyError(timeoutMs: number): RbeeError {
  return new RbeeError(
    'timeout',
    `not ready after ${Math.round(timeoutMs / 100) / 10} s, its ready timeout (a slower engine needs ready_timeout_ms on the spawn, or workers.readyTimeoutMs in the config)`,
  );
}

/** A start or ready call that outlasts the time left to become ready fails; it is not awaited further. */
async function withReadyTimeout<T>(work: Promise<T>, leftMs: number, timedOut: () => RbeeError): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_resolve, reject) => {
    timer = setTimeout(() => reject(timedOut()), Math.max(0, leftMs));
    timer.unref();
  });
  try {
    return await Promise.race([work, timeout]);
  } finally {
    clearTimeout(timer);
  }
}
