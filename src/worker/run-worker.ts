/**
 * A worker process from start to exit: serve HTTP at once (health says "starting"), load the
 * model, report ready, obey the hive's commands, and exit cleanly on SIGTERM or when the hive
 * is gone, so no worker ever outlives its owner holding memory.
 */
import {toRbeeError} from '../errors.js';
import type {HiveCommand} from '../protocol/wire.js';
import type {EngineLoader} from './engine.js';
import {startHeartbeatLoop, type HeartbeatLoop} from './heartbeat-loop.js';
import {WorkerRuntime} from './worker-runtime.js';
import {createWorkerServer} from './worker-server.js';

export type WorkerOptions = {
  workerId: string;
  modelPath: string;
  modelName: string;
  device: string;
  host: string;
  port: number;
  hiveUrl: string | undefined;
  secret: string;
  heartbeatIntervalMs: number;
  orphanTimeoutMs: number;
  contextSize: number;
  threads: number | undefined;
  parallel: number;
  maxQueue: number;
  drainTimeoutMs: number;
};

const log = (message: string) => process.stderr.write(`[worker] ${message}\n`);

export async function runWorker(options: WorkerOptions, loadEngine: EngineLoader): Promise<void> {
  const runtime = new WorkerRuntime({
    workerId: options.workerId,
    modelName: options.modelName,
    device: options.device,
    parallel: options.parallel,
    maxQueue: options.maxQueue,
  });
  const server = createWorkerServer(runtime);
  let heartbeat: HeartbeatLoop | null = null;
  let exiting = false;

  async function shutdown(reason: string, code = 0): Promise<void> {
    if (exiting) {
      return;
    }
    exiting = true;
    log(`stopping (${reason})`);
    runtime.markStopping();
    const drained = runtime.queue.idle();
    const timeout = new Promise(resolve => setTimeout(resolve, options.drainTimeoutMs).unref());
    await Promise.race([drained, timeout]);
    await heartbeat?.beatNow();
    heartbeat?.stop();
    await server.close().catch(() => undefined);
    await runtime.engine?.close().catch(() => undefined);
    process.exit(code);
  }

  function obey(commands: HiveCommand[]): void {
    for (const command of commands) {
      if (command.type === 'shutdown') {
        void shutdown(`hive asked: ${command.reason ?? 'shutdown'}`);
      } else if (command.type === 'drain') {
        log(`draining (${command.reason ?? 'hive asked'})`);
        runtime.queue.drain();
      } else if (command.model === options.modelName || command.model === options.modelPath) {
        // A single-model worker unloads its model by ending: its memory goes back to the device.
        void shutdown(`hive asked to unload ${command.model}`);
      }
    }
  }

  process.on('SIGTERM', () => void shutdown('SIGTERM'));
  process.on('SIGINT', () => void shutdown('SIGINT'));

  await server.listen({host: options.host, port: options.port});
  if (options.hiveUrl !== undefined) {
    heartbeat = startHeartbeatLoop({
      hiveUrl: options.hiveUrl,
      secret: options.secret,
      intervalMs: options.heartbeatIntervalMs,
      orphanTimeoutMs: options.orphanTimeoutMs,
      payload: () => runtime.heartbeat(),
      onCommands: obey,
      onOrphaned: () => void shutdown(`no answer from the hive for ${options.orphanTimeoutMs} ms`),
      log,
    });
  }

  try {
    const engine = await loadEngine({
      modelPath: options.modelPath,
      device: options.device,
      contextSize: options.contextSize,
      threads: options.threads,
      parallel: options.parallel,
      onProgress: fraction => runtime.setLoadProgress(fraction),
    });
    runtime.setEngine(engine);
    log(`ready: ${options.modelName} on ${options.device} (${engine.backend}), http://${options.host}:${options.port}`);
  } catch (error) {
    const rbeeError = toRbeeError(error, 'engine_error');
    runtime.fail(`${rbeeError.code}: ${rbeeError.message}`);
    log(`failed to load the model: ${rbeeError.message}`);
    await heartbeat?.beatNow();
    await shutdown('model load failed', 1);
    return;
  }
  await heartbeat?.beatNow();
}
