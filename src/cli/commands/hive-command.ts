import {Command} from 'commander';
import {envValue, rbeeHome} from '../../config/env.js';
import {loadConfig} from '../../config/load-config.js';
import {startHive} from '../../hive/hive-server.js';
import {globalOptions} from '../context.js';
import {emit} from '../output.js';
import {integerFlag} from '../parse-flags.js';

type StartOptions = {host?: string; port?: number; heartbeatInterval?: number; stopGrace?: number; config?: string};

export function hiveCommand(): Command {
  const hive = new Command('hive').description('the per-machine daemon that runs workers');
  hive.command('start')
    .description('run the hive in the foreground (Ctrl-C stops it and all its workers)')
    .option('--host <address>', 'address to bind (env RBEE_HOST)')
    .option('--port <port>', 'port to bind (env RBEE_PORT)', integerFlag('--port', 0, 65_535))
    .option('--heartbeat-interval <ms>', 'worker heartbeat interval (env RBEE_HEARTBEAT_INTERVAL_MS)', integerFlag('--heartbeat-interval', 50, 600_000))
    .option('--stop-grace <ms>', 'how long a stopping worker may finish before SIGKILL', integerFlag('--stop-grace', 0, 600_000), 10_000)
    .option('--config <file>', 'config file (env RBEE_CONFIG)')
    .action(async (options: StartOptions, command: Command) => {
      const global = globalOptions(command);
      const explicitPath = options.config ?? envValue('RBEE_CONFIG');
      const {config, filepath} = await loadConfig(explicitPath === undefined ? {} : {explicitPath});
      const envPort = envValue('RBEE_PORT');
      const envInterval = envValue('RBEE_HEARTBEAT_INTERVAL_MS');
      const parsePort = integerFlag('RBEE_PORT', 0, 65_535);
      const parseInterval = integerFlag('RBEE_HEARTBEAT_INTERVAL_MS', 50, 600_000);
      const log = (message: string) => process.stderr.write(`[hive] ${message}\n`);
      const running = await startHive({
        host: options.host ?? envValue('RBEE_HOST') ?? config.hive.host ?? '127.0.0.1',
        port: options.port ?? (envPort === undefined ? undefined : parsePort(envPort)) ?? config.hive.port ?? 7833,
        token: global.token ?? envValue('RBEE_TOKEN') ?? config.hive.token,
        rbeeHome: rbeeHome(),
        heartbeatIntervalMs: options.heartbeatInterval ?? (envInterval === undefined ? undefined : parseInterval(envInterval)) ?? config.hive.heartbeatIntervalMs ?? 5_000,
        stopGraceMs: options.stopGrace ?? 10_000,
        workerDefaults: config.workers,
        log,
      });
      emit(global, {url: running.url, pid: process.pid, config: filepath, devices: running.devices}, () =>
        `rbee hive listening on ${running.url} (pid ${process.pid})${filepath === null ? '' : `, config ${filepath}`}\n` +
        `devices: ${running.devices.map(device => device.id).join(', ')}`);
      await new Promise<void>(resolve => {
        let stopping = false;
        const stop = (signal: string) => {
          if (stopping) {
            return;
          }
          stopping = true;
          log(`${signal}: stopping workers`);
          void running.close(`hive received ${signal}`).finally(resolve);
        };
        process.once('SIGINT', () => stop('SIGINT'));
        process.once('SIGTERM', () => stop('SIGTERM'));
      });
    });
  return hive;
}
