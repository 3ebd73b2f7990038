/**
 * What the hive knows of a worker group: one model over several devices, served by a coordinator
 * worker that drives shard workers. The members are ordinary worker records; this ties them together
 * and says whether the group, as a whole, can serve.
 */
import type {GroupHealth, GroupInfo, GroupMembership, SpawnGroupRequest} from '../protocol/wire.js';
import {randomSecret} from '../http/secrets.js';
import type {StoredGroup} from './state-store.js';
import {workerUrl, type WorkerView} from './worker-record.js';

export type GroupSpec = SpawnGroupRequest & {type: string};

export type GroupRecord = {
  id: string;
  spec: GroupSpec;
  coordinatorId: string;
  shardIds: string[];
  health: GroupHealth;
  reason: string | null;
  startedAt: Date;
  /** The model's size as admission estimated it (0 until it is known: a download not done yet). */
  modelBytes: number;
  /** Memory of the group's devices together (a repeated "cpu" counted once). */
  totalBytes: number;
  /** Times the whole group was spawned again after a failure (the restart scheduler keeps when, for the policy's limits). */
  restarts: number;
  /**
   * Shared by this launch's members only (RBEE_GROUP_SECRET), fresh at every relaunch: engines whose
   * ranks connect directly (candle's tensor parallelism) prove it. Held in memory, never stored.
   */
  launchSecret: string;
};

/** A worker's part in its group: what its process is told (`membership`) and the group it serves. */
export type GroupMember = {group: GroupRecord; membership: GroupMembership};

export function memberIds(group: GroupRecord): string[] {
  return [group.coordinatorId, ...group.shardIds];
}

export function isGroupOver(health: GroupHealth): boolean {
  return health === 'failed' || health === 'stopped';
}

/**
 * The group's health from its members. Any member that ended (or is ending) ends the group:
 * the model's layers are spread over all of them, so none can serve alone. A coordinator that
 * cannot reach a shard says so in its heartbeat (`group_health: degraded`) before anything dies.
 */
export function judgeGroup(group: GroupRecord, members: readonly WorkerView[]): {health: GroupHealth; reason: string | null} {
  if (isGroupOver(group.health)) {
    return {health: group.health, reason: group.reason};
  }
  const gone = members.find(member => member.state === 'failed' || member.state === 'stopped' || member.state === 'stopping');
  if (gone !== undefined) {
    const role = gone.group?.membership.role ?? 'member';
    return {health: 'failed', reason: `${role} ${gone.id} on ${gone.spec.device} is ${gone.state}${gone.reason === null ? '' : `: ${gone.reason}`}`};
  }
  if (members.some(member => member.state === 'starting')) {
    return {health: group.health === 'starting' ? 'starting' : 'degraded', reason: group.health === 'starting' ? null : 'a member is restarting'};
  }
  const coordinator = members.find(member => member.id === group.coordinatorId);
  const reported = coordinator?.lastHeartbeat;
  if (reported?.group_health === 'degraded') {
    const missing = (reported.shard_workers ?? []).filter(shard => shard.status !== 'healthy').map(shard => `${shard.worker_id} ${shard.status}`);
    return {health: 'degraded', reason: `the coordinator cannot use every shard${missing.length === 0 ? '' : `: ${missing.join(', ')}`}`};
  }
  return {health: 'healthy', reason: null};
}

export function toGroupInfo(group: GroupRecord, workers: {get(id: string): WorkerView | undefined}): GroupInfo {
  const coordinator = workers.get(group.coordinatorId);
  return {
    group_id: group.id,
    coordinator: {worker_id: group.coordinatorId, device: group.spec.devices[0]!, port: coordinator?.port ?? 0, role: 'coordinator'},
    workers: group.shardIds.map((id, index) => ({worker_id: id, device: group.spec.devices[index + 1]!, role: 'shard' as const})),
    total_vram: group.totalBytes,
    model_vram: group.modelBytes,
    restart: group.spec.restart,
    restarts: group.restarts,
    model: coordinator?.modelName ?? group.spec.model,
    type: group.spec.type,
    devices: group.spec.devices,
    health: group.health,
    reason: group.reason,
    url: coordinator === undefined ? '' : workerUrl(coordinator),
    started_at: group.startedAt.toISOString(),
  };
}

/** A group rebuilt from what a member stored, when a restarted hive re-adopts it; its health is heard anew. */
export function groupFromStored(stored: StoredGroup): GroupRecord {
  const {membership} = stored;
  return {
    id: membership.group_id,
    spec: stored.spec,
    coordinatorId: membership.coordinator,
    shardIds: membership.devices.slice(1).map((_device, index) => `${membership.group_id}-${index + 1}`),
    health: 'starting',
    reason: 're-adopted after a hive restart; waiting for heartbeats',
    startedAt: new Date(stored.started_at),
    modelBytes: stored.model_bytes,
    totalBytes: stored.total_bytes,
    restarts: 0,
    // Only a launch needs it, and a re-adopted group's members have joined already.
    launchSecret: randomSecret(),
  };
}
