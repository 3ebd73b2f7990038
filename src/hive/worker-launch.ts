/**
 * How a worker's process is started: `rbee worker run` with an argument array, an environment
 * without the hive's own credentials, its heartbeat secret, and only its own device visible.
 */
import path from 'node:path';
import {fileURLToPath} from 'node:url';
import type {ResolvedModel} from '../models/resolve-model.js';
import {cudaIndex} from '../protocol/wire.js';
import {groupSecretVariable, shardKeysVariable} from '../worker/worker-auth.js';
import {workerRunArgs, type WorkerArgOptions} from './worker-command-line.js';
import type {LaunchOptions} from './worker-process.js';
import type {WorkerView} from './worker-record.js';

/** The CLI every worker process runs (and every spare, until it becomes one). */
export const rbeeBin = fileURLToPath(new URL('../../bin/rbee.js', import.meta.url));

/**
 * The hive's environment minus what a worker (and the engines and plugins it runs) must not see:
 * the API token, and any worker credential the hive itself was started with.
 */
export function workerEnvironment(env: NodeJS.ProcessEnv): NodeJS.ProcessEnv {
  const {RBEE_TOKEN: _token, RBEE_WORKER_SECRET: _secret, [shardKeysVariable]: _keys, [groupSecretVariable]: _group, ...rest} = env;
  return rest;
}

export function workerLogFile(logsDir: string, id: string): string {
  return path.join(logsDir, `${id}.log`);
}

export function workerLaunchOptions(
  worker: WorkerView,
  model: Pick<ResolvedModel, 'path' | 'name'>,
  credentials: {
    secret: string;
    /** A coordinator probes its shards' own ports: their keys (never their secrets), by worker id. */
    shardKeys: Record<string, string>;
    /** A group member: the secret of its group's launch. */
    groupSecret?: string;
  },
  options: WorkerArgOptions & {logsDir: string; env?: NodeJS.ProcessEnv},
): LaunchOptions {
  const cuda = cudaIndex(worker.spec.device);
  return {
    command: process.execPath,
    args: [rbeeBin, ...workerRunArgs(worker, model, options)],
    logFile: workerLogFile(options.logsDir, worker.id),
    env: {
      ...workerEnvironment(options.env ?? process.env),
      RBEE_WORKER_SECRET: credentials.secret,
      ...(Object.keys(credentials.shardKeys).length === 0 ? {} : {[shardKeysVariable]: JSON.stringify(credentials.shardKeys)}),
      ...(credentials.groupSecret === undefined ? {} : {[groupSecretVariable]: credentials.groupSecret}),
      // One worker, one device: a GPU worker sees its card only, a CPU worker none (a CUDA build of an
      // engine would otherwise take memory on every card it can see, unaccounted).
      ...(cuda !== undefined ? {CUDA_VISIBLE_DEVICES: String(cuda)} : worker.spec.device === 'cpu' ? {CUDA_VISIBLE_DEVICES: ''} : {}),
    },
  };
}
