/**
 * The group part of a member's heartbeat. A shard names its group and coordinator; the coordinator
 * also asks each shard's worker for its health, so the hive hears from the one process that needs
 * the shards whether it can still reach them (spec: the coordinator reports `group_health`).
 */
import type {AdapterGroup} from '../adapters/adapter-api.js';
import type {GroupMembership, Heartbeat} from '../protocol/wire.js';

type ShardStatus = NonNullable<Heartbeat['shard_workers']>[number]['status'];

async function shardStatus(url: string, timeoutMs: number): Promise<ShardStatus> {
  try {
    const response = await fetch(`${url}/health`, {signal: AbortSignal.timeout(timeoutMs)});
    if (response.ok) {
      return 'healthy';
    }
    const body = await response.json().catch(() => null) as {status?: unknown} | null;
    return body?.status === 'starting' ? 'starting' : 'unhealthy';
  } catch {
    return 'missing';
  }
}

export function adapterGroup(membership: GroupMembership): AdapterGroup {
  return {
    groupId: membership.group_id,
    role: membership.role,
    coordinatorId: membership.coordinator,
    devices: membership.devices,
    endpoint: membership.endpoint,
    shards: membership.shards.map(shard => ({workerId: shard.worker_id, device: shard.device, endpoint: shard.endpoint})),
  };
}

/** `probe`: whether to ask the shards now (a coordinator still loading has nothing to judge yet). */
export async function groupHeartbeatFields(membership: GroupMembership, probe: boolean, timeoutMs = 1_500): Promise<Partial<Heartbeat>> {
  if (membership.role === 'shard') {
    return {group_id: membership.group_id, role: 'shard', coordinator: membership.coordinator};
  }
  const base: Partial<Heartbeat> = {group_id: membership.group_id, role: 'coordinator', devices: membership.devices};
  if (!probe) {
    return base;
  }
  const shards = await Promise.all(membership.shards.map(async shard => ({worker_id: shard.worker_id, status: await shardStatus(shard.url, timeoutMs)})));
  return {...base, shard_workers: shards, group_health: shards.every(shard => shard.status === 'healthy') ? 'healthy' : 'degraded'};
}
