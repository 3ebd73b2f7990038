import path from 'node:path';
import {Command} from 'commander';
import {envValue, rbeeHome} from '../../config/env.js';
import {checkApiToken, resolveApiToken} from '../../config/api-token.js';
import {ensurePrivateDir} from '../../config/private-home.js';
import {RbeeError} from '../../errors.js';
import {globalOptions, hiveClient} from '../context.js';
import {emit} from '../output.js';
import {integerFlagIn} from '../parse-flags.js';
import {defaults, limits, type Range} from '../../config/limits.js';
import {isHiveAlive} from '../../hive/home-owner.js';
import {isLoopbackUrl} from '../../http/loopback.js';

type StartOptions = {
  host?: string;
  port?: number;
  heartbeatInterval?: number;
  orphanTimeout?: number;
  missedHeartbeats?: number;
  loadStallTimeout?: number;
  workerTimeout?: number;
  stopGrace?: number;
  modelDir?: string[];
  config?: string;
  detach?: boolean;
};

function fromEnv(name: 'RBEE_PORT' | 'RBEE_HEARTBEAT_INTERVAL_MS', range: Range): number | undefined {
  const value = envValue(name);
  try {
    return value === undefined ? undefined : integerFlagIn(name, range)(value);
  } catch (error) {
    throw new RbeeError('invalid_request', (error as Error).message, {cause: error});
  }
}

function startCommand(): Command {
  return new Command('start')
    .description('run the hive in the foreground (Ctrl-C stops it and all its workers)')
    .option('--host <address>', 'address to bind (env RBEE_HOST); beyond loopback needs a token')
    .option('--port <port>', 'port to bind (env RBEE_PORT)', integerFlagIn('--port', limits.port))
    .option(
      '--heartbeat-interval <ms>',
      'worker heartbeat interval (env RBEE_HEARTBEAT_INTERVAL_MS)',
      integerFlagIn('--heartbeat-interval', limits.heartbeatIntervalMs),
    )
    .option(
      '--orphan-timeout <ms>',
      'workers exit when the hive is silent this long (default: --missed-heartbeats intervals)',
      integerFlagIn('--orphan-timeout', limits.orphanTimeoutMs),
    )
    .option(
      '--missed-heartbeats <n>',
      'heartbeat intervals a worker may miss before the hive fails it, and a worker waits for a silent hive (default 3)',
      integerFlagIn('--missed-heartbeats', limits.missedHeartbeats),
    )
    .option(
      '--load-stall-timeout <ms>',
      'fail a download or model load with no progress this long',
      integerFlagIn('--load-stall-timeout', limits.loadStallTimeoutMs),
    )
    .option(
      '--worker-timeout <ms>',
      "a worker silent this long on a request is checked (its /health); a hung one's requests go to another worker (default 2000)",
      integerFlagIn('--worker-timeout', limits.workerTimeoutMs),
    )
    .option('--stop-grace <ms>', 'how long a stopping worker may finish before SIGKILL', integerFlagIn('--stop-grace', limits.stopGraceMs))
    .option('--model-dir <folder...>', 'model files must lie in these folders (env RBEE_MODEL_DIRS)')
    .option('--config <file>', 'config file (env RBEE_CONFIG)')
    .option('--detach', 'run in the background (own session, log in RBEE_HOME/logs/hive.log); return once it answers')
    .action(async (options: StartOptions, command: Command) => {
      const global = globalOptions(command);
      if (options.detach === true) {
        const {startDetachedHive, withoutOption} = await import('../detach-hive.js');
        // The token reaches the detached hive by environment: on its command line it would be readable in
        // /proc by any local user for the hive's whole life. Checked here, so a bad one fails before the spawn.
        const token = global.token === undefined ? undefined : checkApiToken(global.token, '--token');
        const args = withoutOption(
          process.argv.slice(2).filter(arg => arg !== '--detach'),
          '--token',
        );
        const detached = await startDetachedHive({home: rbeeHome(), args, timeoutMs: 120_000, env: token === undefined ? {} : {RBEE_TOKEN: token}});
        emit(
          global,
          {...detached, detached: true},
          () => `rbee hive running in the background on ${detached.url} (pid ${detached.pid}); log: ${detached.log}\nstop it with: rbee hive stop`,
        );
        return;
      }
      // Loaded here, not at the top: every other command stays fast to start.
      const [{loadConfig}, {startHive}, {adaptersOf}] = await Promise.all([
        import('../../config/load-config.js'),
        import('../../hive/hive-server.js'),
        import('../../adapters/configured-adapters.js'),
      ]);
      const home = rbeeHome();
      ensurePrivateDir(home);
      const explicitPath = options.config ?? envValue('RBEE_CONFIG');
      const loaded = await loadConfig(explicitPath === undefined ? {} : {explicitPath});
      const {config, filepath} = loaded;
      const envModelDirs = envValue('RBEE_MODEL_DIRS')
        ?.split(path.delimiter)
        .filter(dir => dir !== '');
      const modelDirs = options.modelDir ?? envModelDirs ?? config.hive.modelDirs;
      const log = (message: string) => process.stderr.write(`[hive] ${message}\n`);
      const adapters = await adaptersOf(loaded);
      for (const error of adapters.errors) {
        // One bad plugin must not stop the hive: it runs without it and says why.
        log(`adapter ${error.source} not loaded: ${error.message}`);
      }
      const running = await startHive({
        adapters,
        configPath: filepath,
        host: options.host ?? envValue('RBEE_HOST') ?? config.hive.host ?? defaults.hiveHost,
        port: options.port ?? fromEnv('RBEE_PORT', limits.port) ?? config.hive.port ?? defaults.hivePort,
        token: resolveApiToken({flag: global.token, config: {token: config.hive.token, path: filepath}}),
        rbeeHome: home,
        heartbeatIntervalMs:
          options.heartbeatInterval ??
          fromEnv('RBEE_HEARTBEAT_INTERVAL_MS', limits.heartbeatIntervalMs) ??
          config.hive.heartbeatIntervalMs ??
          defaults.heartbeatIntervalMs,
        orphanTimeoutMs: options.orphanTimeout ?? config.hive.orphanTimeoutMs,
        missedHeartbeats: options.missedHeartbeats ?? config.hive.missedHeartbeats,
        loadStallTimeoutMs: options.loadStallTimeout ?? config.hive.loadStallTimeoutMs,
        workerTimeoutMs: options.workerTimeout ?? config.hive.workerTimeoutMs,
        stopGraceMs: options.stopGrace ?? config.hive.stopGraceMs ?? defaults.stopGraceMs,
        modelDirs: modelDirs?.map(dir => path.resolve(dir)),
        workerDefaults: config.workers,
        catalogue: config.models,
        spareWorkers: config.hive.spareWorkers,
        onDemand: {
          maxLoadedModels: config.hive.maxLoadedModels ?? null,
          ...(config.hive.vramHeadroom === undefined ? {} : {vramHeadroom: config.hive.vramHeadroom}),
          ...(config.hive.idleTimeout === undefined ? {} : {idleTimeoutMs: config.hive.idleTimeout}),
          ...(config.hive.modelStartTimeout === undefined ? {} : {startTimeoutMs: config.hive.modelStartTimeout}),
        },
        log,
      });
      emit(
        global,
        {url: running.url, pid: process.pid, config: filepath, devices: running.devices, adopted: running.adopted},
        () =>
          `rbee hive listening on ${running.url} (pid ${process.pid})${filepath === null ? '' : `, config ${filepath}`}\n` +
          `devices: ${running.devices.map(device => device.id).join(', ')}`,
      );
      // Persistent listeners, not once(): a library's signal-exit hook re-raises a signal that
      // has no other listener left, which would kill the hive before its workers are stopped.
      const stop = (signal: string) => {
        log(`${signal}: stopping workers`);
        void running.close(`hive received ${signal}`);
      };
      process.on('SIGINT', () => stop('SIGINT'));
      process.on('SIGTERM', () => stop('SIGTERM'));
      // SIGHUP: a foreground hive's terminal closed; a detached one has none to lose.
      process.on('SIGHUP', () => stop('SIGHUP'));
      // The home's record of this hive (hive.json) is the hive's own: written under its lock, removed as it closes.
      await running.closed;
    });
}

function stopCommand(): Command {
  return new Command('stop')
    .description('stop the hive and all its workers, and wait until they are gone (finds the one running on RBEE_HOME without --hive)')
    .action(async (_options: unknown, command: Command) => {
      const client = hiveClient(command);
      const {pid} = await client.status();
      await client.shutdown();
      // Wait until it is gone, so a script can start another at once: first the port, then, on this
      // machine, the process itself (it is still closing its state store after the port closes).
      const local = isLoopbackUrl(client.url);
      const deadline = Date.now() + 60_000;
      while (Date.now() < deadline) {
        let answering = true;
        try {
          await client.health();
        } catch {
          answering = false;
        }
        if (!answering && (!local || !isHiveAlive(pid))) {
          emit(globalOptions(command), {stopped: true, url: client.url}, () => `hive at ${client.url} stopped`);
          return;
        }
        await new Promise(resolve => setTimeout(resolve, 100));
      }
      emit(globalOptions(command), {stopped: false, url: client.url}, () => `hive at ${client.url} is still running after 60 s`);
      process.exitCode = 5;
    });
}

export function hiveCommand(): Command {
  return new Command('hive').description('the per-machine daemon that runs workers').addCommand(startCommand()).addCommand(stopCommand());
}
