import path from 'node:path';
import {Command} from 'commander';
import type {z} from 'zod';
import {RbeeError} from '../../errors.js';
import {parseWire} from '../../protocol/parse.js';
import {AdapterOptionsSchema, GroupMembershipSchema, type AdapterOptions} from '../../protocol/wire.js';
import {workerDefaults} from '../../worker/worker-defaults.js';
import {integerFlagIn} from '../parse-flags.js';
import {limits} from '../../config/limits.js';
import {isLoopback} from '../../http/loopback.js';
import {takeWorkerCredentials, workerSecretVariable} from '../../worker/worker-auth.js';
import {traceStartup} from '../../startup-trace.js';

type RunOptions = {
  type: string;
  workerId: string;
  modelPath: string;
  modelName?: string;
  device: string;
  host: string;
  port: number;
  hiveUrl?: string;
  link?: string;
  heartbeatInterval: number;
  orphanTimeout?: number;
  contextSize: number;
  threads?: number;
  parallel: number;
  maxQueue: number;
  drainTimeout: number;
  readyTimeout?: number;
  config?: string;
  group?: string;
  adapterOptions?: string;
};

/**
 * A flag the hive passes as JSON (a member's part in a worker group, a spawn's `adapter_options`),
 * checked against its wire schema like any wire message.
 */
function parseJsonFlag<S extends z.ZodType>(schema: S, text: string | undefined, flag: string): z.output<S> | undefined {
  if (text === undefined) {
    return undefined;
  }
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (error) {
    throw new RbeeError('invalid_request', `${flag}: not JSON: ${(error as Error).message}`, {cause: error});
  }
  const parsed = parseWire(schema, value, flag);
  if (!parsed.ok) {
    throw new RbeeError('invalid_request', parsed.message);
  }
  return parsed.value;
}

/** The adapter for `type`, from the built-in ones and the plugins of the hive's config (with this worker's options, if any). */
async function adapterFor(type: string, configPath: string | undefined, adapterOptions: AdapterOptions | undefined) {
  const {loadConfiguredAdapter} = await import('../../adapters/configured-adapters.js');
  const found = await loadConfiguredAdapter(type, configPath, adapterOptions);
  if (found.adapter === null) {
    const {adapters, errors} = found.loaded;
    const broken = errors.map(error => `${error.source}: ${error.message}`).join('; ');
    throw new RbeeError(
      'invalid_request',
      `unknown worker type "${type}": available types are ${adapters.map(loaded => loaded.adapter.type).join(', ')}${broken === '' ? '' : ` (not loaded: ${broken})`}`,
    );
  }
  return found.adapter;
}

/** The worker process itself; the hive starts it, people normally don't. */
export function workerRunCommand(): Command {
  return new Command('run')
    .description('run one worker process in the foreground (started by the hive)')
    .requiredOption('--type <type>', 'worker type (the hive always names it)')
    .requiredOption('--worker-id <id>', 'id the hive knows this worker by')
    .requiredOption('--model-path <path>', 'the model: a GGUF file, or a folder for engines that load one')
    .option('--model-name <name>', 'name the model is served as')
    .option('--device <device>', 'cpu, cuda:N or metal', 'cpu')
    .option('--host <address>', 'address to serve on', '127.0.0.1')
    .requiredOption('--port <port>', 'port to serve on', integerFlagIn('--port', limits.port))
    .option('--hive-url <url>', 'hive to heartbeat to (none: standalone)')
    .option('--link <socket>', "a Unix socket to take the hive's requests on, besides the port (the hive sets it)")
    .option(
      '--heartbeat-interval <ms>',
      'heartbeat interval',
      integerFlagIn('--heartbeat-interval', limits.heartbeatIntervalMs),
      workerDefaults.heartbeatIntervalMs,
    )
    .option(
      '--orphan-timeout <ms>',
      'exit when the hive has not answered for this long (default: 3 intervals)',
      integerFlagIn('--orphan-timeout', limits.orphanTimeoutMs),
    )
    .option('--context-size <tokens>', 'context per parallel request', integerFlagIn('--context-size', limits.contextSize), workerDefaults.contextSize)
    .option('--threads <n>', 'CPU threads', integerFlagIn('--threads', limits.threads))
    .option('--parallel <n>', 'requests generated at once', integerFlagIn('--parallel', limits.parallel), workerDefaults.parallel)
    .option('--max-queue <n>', 'requests that may wait beyond --parallel', integerFlagIn('--max-queue', limits.maxQueue), workerDefaults.maxQueue)
    .option('--config <file>', "the hive's config file, for its adapter plugins")
    .option('--adapter-options <json>', "options for the adapter's factory, over the config's (the hive sets them)")
    .option('--group <json>', "this worker's part in a worker group (the hive sets it)")
    .option(
      '--ready-timeout <ms>',
      "fail when the engine is not ready after this long (default: the adapter's, else 10 min)",
      integerFlagIn('--ready-timeout', limits.readyTimeoutMs),
    )
    .option(
      '--drain-timeout <ms>',
      'on stop, how long in-flight requests may finish',
      integerFlagIn('--drain-timeout', limits.stopGraceMs),
      workerDefaults.drainTimeoutMs,
    )
    .action(async (options: RunOptions) => {
      traceStartup(options.workerId, 'command parsed');
      const credentials = takeWorkerCredentials();
      if (options.hiveUrl !== undefined && credentials.key === null) {
        throw new RbeeError('invalid_request', `${workerSecretVariable} must be set when --hive-url is given`);
      }
      if (options.link !== undefined && (credentials.key === null || !path.isAbsolute(options.link))) {
        throw new RbeeError('invalid_request', `--link ${options.link}: an absolute socket path, for a worker of a hive (${workerSecretVariable} set)`, {
          field: 'link',
        });
      }
      if (credentials.key === null && !isLoopback(options.host)) {
        throw new RbeeError('invalid_request', `--host ${options.host}: a worker without ${workerSecretVariable} (and so without a key) serves loopback only`);
      }
      // Loaded here, not at the top: the worker's start-up time is spawn-to-ready time.
      const group = parseJsonFlag(GroupMembershipSchema, options.group, '--group');
      const {runWorker} = await import('../../worker/run-worker.js');
      const adapter = await adapterFor(options.type, options.config, parseJsonFlag(AdapterOptionsSchema, options.adapterOptions, '--adapter-options'));
      traceStartup(options.workerId, 'adapter loaded');
      if (group !== undefined && adapter.groups !== true) {
        throw new RbeeError('invalid_request', `--group: worker type "${options.type}" cannot run in a worker group`);
      }
      await runWorker(
        {
          workerId: options.workerId,
          modelPath: options.modelPath,
          modelName: options.modelName ?? options.modelPath,
          device: options.device,
          host: options.host,
          port: options.port,
          hiveUrl: options.hiveUrl,
          secret: credentials.secret,
          key: credentials.key,
          link: options.link,
          shardKeys: credentials.shardKeys,
          groupSecret: credentials.groupSecret,
          heartbeatIntervalMs: options.heartbeatInterval,
          orphanTimeoutMs: options.orphanTimeout ?? 3 * options.heartbeatInterval,
          contextSize: options.contextSize,
          threads: options.threads,
          parallel: options.parallel,
          maxQueue: options.maxQueue,
          drainTimeoutMs: options.drainTimeout,
          readyTimeoutMs: options.readyTimeout,
          group,
        },
        adapter,
      );
    });
}
