/**
 * The group part of a member's heartbeat. A shard names its group and coordinator; the coordinator
 * also asks each shard's worker for its health, so the hive hears from the one process that needs
 * the shards whether it can still reach them (spec: the coordinator reports `group_health`).
 */
import type {AdapterGroup} from '../adapters/adapter-api.js';
import {WorkerHealthSchema, type GroupMembership, type Heartbeat} from '../protocol/wire.js';

type ShardStatus = NonNullable<Heartbeat['shard_workers']>[number]['status'];
type Vram = {vram_used: number; vram_total: number};
type ShardHealth = {status: ShardStatus; vram: Vram | null};

/** A shard worker's /health: whether it serves, and its engine's device memory when it says. */
async function shardHealth(url: string, key: string | undefined, timeoutMs: number): Promise<ShardHealth> {
  try {
    const response = await fetch(`${url}/health`, {
      signal: AbortSignal.timeout(timeoutMs),
      ...(key === undefined ? {} : {headers: {authorization: `Bearer ${key}`}}),
    });
    const parsed = WorkerHealthSchema.safeParse(await response.json().catch(() => null));
    // An answer that is not a worker's health says nothing about the shard's memory, nor that it serves.
    const body = parsed.success ? parsed.data : null;
    const vram = body?.vram_used === undefined || body.vram_total === undefined ? null : {vram_used: body.vram_used, vram_total: body.vram_total};
    if (response.ok && body !== null) {
      return {status: 'healthy', vram};
    }
    return {status: body?.status === 'starting' ? 'starting' : 'unhealthy', vram};
  } catch {
    return {status: 'missing', vram: null};
  }
}

/**
 * The spec's `vram_per_device` and `vram_total`: each member's engine memory filed under its device
 * (the coordinator's first), GPUs only; a card counted once in the total however many members use it.
 */
function groupVram(membership: GroupMembership, own: Vram | null, shards: readonly ShardHealth[]): Partial<Heartbeat> {
  const members: Array<[string, Vram | null]> = [
    [membership.devices[0]!, own],
    ...membership.shards.map((shard, index) => [shard.device, shards[index]?.vram ?? null] as [string, Vram | null]),
  ];
  const perDevice: Record<string, number> = {};
  const totals = new Map<string, number>();
  for (const [device, vram] of members) {
    if (device === 'cpu' || vram === null) {
      continue;
    }
    perDevice[device] = (perDevice[device] ?? 0) + vram.vram_used;
    totals.set(device, Math.max(totals.get(device) ?? 0, vram.vram_total));
  }
  if (totals.size === 0) {
    return {};
  }
  return {vram_per_device: perDevice, vram_total: [...totals.values()].reduce((sum, total) => sum + total, 0)};
}

export function adapterGroup(membership: GroupMembership, secret = ''): AdapterGroup {
  return {
    // A hive that names no rank (older than ranks): the coordinator is 0, a shard's is unknown (-1).
    rank: membership.rank ?? (membership.role === 'coordinator' ? 0 : -1),
    secret,
    groupId: membership.group_id,
    role: membership.role,
    coordinatorId: membership.coordinator,
    devices: membership.devices,
    endpoint: membership.endpoint,
    shards: membership.shards.map(shard => ({workerId: shard.worker_id, device: shard.device, endpoint: shard.endpoint})),
  };
}

/**
 * `shardKeys`: the keys to the shards' own ports, by worker id (the hive gives them to the coordinator).
 * `serving`: whether the coordinator serves (while it loads there is nothing to judge yet: the
 * shards are not asked); `own`: its engine's device memory, when measured.
 */
export async function groupHeartbeatFields(
  membership: GroupMembership,
  serving: boolean,
  own: Vram | null,
  timeoutMs = 1_500,
  shardKeys: Record<string, string> = {},
): Promise<Partial<Heartbeat>> {
  if (membership.role === 'shard') {
    return {group_id: membership.group_id, role: 'shard', coordinator: membership.coordinator};
  }
  const base: Partial<Heartbeat> = {group_id: membership.group_id, role: 'coordinator', devices: membership.devices};
  if (!serving) {
    return base;
  }
  const shards = await Promise.all(membership.shards.map(shard => shardHealth(shard.url, shardKeys[shard.worker_id], timeoutMs)));
  return {
    ...base,
    ...groupVram(membership, own, shards),
    shard_workers: shards.map((shard, index) => ({worker_id: membership.shards[index]!.worker_id, status: shard.status})),
    group_health: shards.every(shard => shard.status === 'healthy') ? 'healthy' : 'degraded',
  };
}
