import type {ResolvedModel} from '../models/resolve-model.js';
import {workerDefaults} from '../worker/worker-defaults.js';
import {workerLinkPath} from './worker-links.js';
import type {WorkerView} from './worker-record.js';

export type WorkerArgOptions = {
  hiveUrl: () => string;
  heartbeatIntervalMs: number;
  orphanTimeoutMs: number;
  missedHeartbeats: number;
  configPath: string | null;
  /** Where workers serve the hive's links (worker-links.ts); null: no links, HTTP only. */
  linksDir: string | null;
  defaults: {contextSize?: number | undefined; threads?: number | undefined; parallel?: number | undefined; readyTimeoutMs?: number | undefined};
};

/** `rbee worker run`'s arguments for a record: an argument array, never a shell string. */
export function workerRunArgs(record: WorkerView, model: Pick<ResolvedModel, 'path' | 'name'>, options: WorkerArgOptions): string[] {
  const {spec} = record;
  const {defaults} = options;
  const interval = spec.heartbeat_interval_ms ?? options.heartbeatIntervalMs;
  const args = [
    'worker',
    'run',
    '--type',
    spec.type,
    '--worker-id',
    record.id,
    '--model-path',
    model.path,
    '--model-name',
    model.name,
    '--device',
    spec.device,
    '--port',
    String(record.port),
    '--hive-url',
    options.hiveUrl(),
    '--heartbeat-interval',
    String(interval),
    // A worker must not give up on its hive sooner than the hive would on it.
    '--orphan-timeout',
    String(Math.max(options.orphanTimeoutMs, options.missedHeartbeats * interval)),
    '--context-size',
    String(spec.context_size ?? defaults.contextSize ?? workerDefaults.contextSize),
    '--parallel',
    String(spec.parallel ?? defaults.parallel ?? workerDefaults.parallel),
  ];
  const threads = spec.threads ?? defaults.threads;
  if (threads !== undefined) args.push('--threads', String(threads));
  if (spec.max_queue !== undefined) args.push('--max-queue', String(spec.max_queue));
  const readyTimeout = spec.ready_timeout_ms ?? defaults.readyTimeoutMs;
  if (readyTimeout !== undefined) args.push('--ready-timeout', String(readyTimeout));
  if (spec.adapter_options !== undefined) args.push('--adapter-options', JSON.stringify(spec.adapter_options));
  if (options.configPath !== null) args.push('--config', options.configPath);
  const link = options.linksDir === null ? null : workerLinkPath(options.linksDir, record.id);
  if (link !== null) args.push('--link', link);
  if (record.group !== null) args.push('--group', JSON.stringify(record.group.membership));
  return args;
}
