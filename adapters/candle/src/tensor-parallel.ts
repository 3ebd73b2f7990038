/**
 * The candle engine in a worker group: tensor parallelism, one rank per member, on the CPU (the
 * ggml path over loopback) or on CUDA GPUs (the graph path, one GPU a rank). The
 * coordinator (rank 0) loads its slice as a model that drives the shards' slices (it owns the
 * tokenizer, sampling and the HTTP endpoint); each shard loads its own slice, listens on the
 * endpoint the hive gave it, and runs the coordinator's steps until the group ends.
 */
import {
  RbeeError,
  checkNativeTensorParallel,
  cudaIndex,
  openNativeShard,
  type AdapterContext,
  type AdapterGroup,
  type NativeShard,
  type NativeTensorParallel,
} from 'rbee';

/**
 * Refuses, before anything starts, a group candle cannot form: CPU and GPU ranks mixed (a group is
 * all "cpu", the ggml path over loopback, or all "cuda:N", the graph path with one GPU a rank), or
 * a model whose shapes do not split.
 */
export async function checkCandleGroup(group: {modelPath: string; devices: string[]}): Promise<void> {
  const cpu = group.devices.filter(device => device === 'cpu').length;
  const cuda = group.devices.filter(device => /^cuda:\d+$/.test(device)).length;
  if (cpu !== group.devices.length && cuda !== group.devices.length) {
    throw new RbeeError(
      'invalid_request',
      `devices: a candle group runs on the CPU (every device "cpu") or on CUDA GPUs (every device cuda:N), not on ${group.devices.join(',')}`,
      {field: 'devices'},
    );
  }
  try {
    await checkNativeTensorParallel(group.modelPath, group.devices.length);
  } catch (error) {
    throw new RbeeError('invalid_request', `devices: the model cannot be split over ${group.devices.length} ranks: ${(error as Error).message}`, {
      field: 'devices',
      cause: error,
    });
  }
}

/**
 * The device as the engine in this process numbers it. The hive narrows a GPU worker's
 * CUDA_VISIBLE_DEVICES to its own card, which the process then sees as cuda:0; a worker started
 * by hand, with no such narrowing, keeps its cuda:N. A card the list does not name is left as
 * given, and the engine says it is not available.
 */
export function engineDevice(device: string, env: NodeJS.ProcessEnv = process.env): string {
  const cuda = cudaIndex(device);
  const visible = env.CUDA_VISIBLE_DEVICES;
  if (cuda === undefined || visible === undefined || visible.trim() === '') {
    return device;
  }
  const ordinal = visible
    .split(',')
    .map(entry => entry.trim())
    .indexOf(String(cuda));
  return ordinal < 0 ? device : `cuda:${ordinal}`;
}

/** The coordinator's load option: its shards' endpoints, shard 1 first, and the launch's secret. */
export function coordinatorOptions(group: AdapterGroup, timeoutMs: number | undefined): NativeTensorParallel {
  if (group.secret === '') {
    throw new RbeeError('invalid_request', `group ${group.groupId}: the hive gave no group secret (RBEE_GROUP_SECRET)`);
  }
  return {shards: group.shards.map(shard => shard.endpoint), secret: group.secret, ...(timeoutMs === undefined ? {} : {timeoutMs})};
}

/**
 * A shard: loads and listens, then serves in the background. When its group fails (a rank gone, a
 * collective past its deadline), the worker reports failure at once, so the hive ends the group.
 */
export async function startShard(
  context: AdapterContext,
  group: AdapterGroup,
  options: {threads: number | undefined; timeoutMs: number | undefined},
): Promise<NativeShard> {
  if (group.endpoint === null || group.secret === '' || group.rank < 1) {
    throw new RbeeError('invalid_request', `shard ${context.workerId} was given no endpoint, rank or group secret: its hive cannot run candle groups`);
  }
  const shard = await openNativeShard({
    path: context.modelPath,
    rank: group.rank,
    world: group.devices.length,
    endpoint: group.endpoint,
    secret: group.secret,
    contextSize: context.contextSize,
    device: engineDevice(context.device),
    // A GPU rank captures the coordinator's graphs: one per batch size its streams need.
    parallel: context.parallel,
    ...(options.threads === undefined ? {} : {threads: options.threads}),
    ...(options.timeoutMs === undefined ? {} : {timeoutMs: options.timeoutMs}),
    onProgress: fraction => context.reportLoadProgress(fraction),
  });
  context.log(`candle: rank ${group.rank} of ${group.devices.length} of group ${group.groupId}, listening on ${group.endpoint}`);
  shard.serve().then(
    // Closed on purpose (the group is stopping): the hive stops this shard next.
    () => context.log(`candle: the coordinator closed group ${group.groupId}`),
    (error: unknown) => context.reportFailure(`tensor-parallel group failed: ${(error as Error).message}`),
  );
  return shard;
}
