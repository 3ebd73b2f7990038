/**
 * The hive's worker groups: spawning one (its members are ordinary workers, run by the supervisor),
 * following its health as its members change, ending it whole when one member is lost, and bringing
 * it back whole by its restart policy. What it needs of the supervisor comes in as `GroupHost`.
 */
import {RbeeError} from '../errors.js';
import type {ResolvedModel} from '../models/resolve-model.js';
import type {SpawnGroupRequest} from '../protocol/wire.js';
import {groupMemberRecord, layoutMembers, planGroup, type GroupPlanOptions} from './group-plan.js';
import {groupFromStored, isGroupOver, judgeGroup, memberIds, type GroupRecord} from './group-record.js';
import {decideRestart, type RestartLimits} from './restart-policy.js';
import type {StoredGroup} from './state-store.js';
import {isAlive, type WorkerRecord} from './worker-record.js';

export type GroupHost = {
  workers: ReadonlyMap<string, WorkerRecord>;
  planOptions: () => GroupPlanOptions;
  /** Records a new member (persisted, announced). */
  add: (record: WorkerRecord) => void;
  /** A member laid out again for a group restart (persisted, announced). */
  relaunched: (record: WorkerRecord) => void;
  /** Resolves the model if need be and starts the member's process. */
  run: (record: WorkerRecord, local: ResolvedModel | null) => void;
  /** Stops one member's process (not its group). */
  stop: (id: string, reason: string) => Promise<WorkerRecord>;
  /** Settles when the member's current process has ended and been accounted for. */
  ended: (id: string) => Promise<void> | undefined;
  emit: (group: GroupRecord) => void;
  spawned: (group: GroupRecord) => void;
  log: (message: string) => void;
  restartLimits: RestartLimits;
};

export class WorkerGroups {
  readonly groups = new Map<string, GroupRecord>();
  readonly #host: GroupHost;
  readonly #restartTimers = new Map<string, NodeJS.Timeout>();

  constructor(host: GroupHost) {
    this.#host = host;
  }

  async spawn(request: SpawnGroupRequest): Promise<GroupRecord> {
    const plan = await planGroup(request, this.#host.planOptions());
    const {group} = plan;
    this.groups.set(group.id, group);
    const records = [plan.coordinator, ...plan.shards].map(member => groupMemberRecord(member, group, plan.local));
    this.#host.spawned(group);
    records.forEach(record => this.#host.add(record));
    for (const record of records) {
      this.#host.run(record, record.group?.membership.role === 'shard' ? null : plan.local);
    }
    return group;
  }

  get(id: string): GroupRecord {
    const group = this.groups.get(id);
    if (group === undefined) {
      throw new RbeeError('group_not_found', `no worker group "${id}" on this hive`);
    }
    return group;
  }

  /** Every member stopped, the coordinator first so it lets go of its shards; resolves once all are gone. */
  async stop(id: string, reason: string): Promise<GroupRecord> {
    const group = this.get(id);
    this.#cancelRestart(id);
    if (!isGroupOver(group.health)) {
      this.#setHealth(group, 'stopped', reason);
    }
    await this.#host.stop(group.coordinatorId, reason);
    await Promise.all(group.shardIds.map(shard => this.#host.stop(shard, reason)));
    return group;
  }

  /** The hive is stopping: no group comes back, and none is judged on its members' ends. */
  markAllStopped(reason: string): void {
    for (const group of this.groups.values()) {
      this.#cancelRestart(group.id);
      if (!isGroupOver(group.health)) {
        this.#setHealth(group, 'stopped', reason);
      }
    }
  }

  /** The group a re-adopted member belongs to, rebuilt from what it stored the first time one is seen. */
  adopt(stored: StoredGroup): GroupRecord {
    let group = this.groups.get(stored.membership.group_id);
    if (group === undefined) {
      group = groupFromStored(stored);
      this.groups.set(group.id, group);
    }
    return group;
  }

  /** After a member changed (state, heartbeat): the group's health follows, and a member lost ends the whole group. */
  onMemberChange(record: WorkerRecord): void {
    const group = record.group?.group;
    if (group === undefined || isGroupOver(group.health)) {
      return;
    }
    const members = memberIds(group).map(id => this.#host.workers.get(id)).filter(member => member !== undefined);
    const verdict = judgeGroup(group, members);
    if (verdict.health === group.health && verdict.reason === group.reason) {
      return;
    }
    this.#setHealth(group, verdict.health, verdict.reason);
    if (verdict.health === 'failed') {
      this.#host.log(`${group.id} failed: ${verdict.reason}; stopping its other members`);
      for (const member of members) {
        if (isAlive(member.state) && member.state !== 'stopping') {
          void this.#host.stop(member.id, `group ${group.id} failed: ${verdict.reason}`);
        }
      }
      void this.#restartLater(group, verdict.reason ?? 'a member failed');
    }
  }

  /** A failed group comes back whole, by its restart policy, once every member's process is gone. */
  async #restartLater(group: GroupRecord, reason: string): Promise<void> {
    await Promise.all(memberIds(group).map(id => this.#host.ended(id)));
    if (group.health !== 'failed') {
      return; // stopped on request meanwhile
    }
    const decision = decideRestart({policy: group.spec.restart, end: 'failure', recentRestarts: group.restartTimes, now: Date.now(), limits: this.#host.restartLimits});
    if (!decision.restart) {
      if (group.restarts > 0) {
        this.#setHealth(group, 'failed', `${reason}; ${decision.why}`);
      }
      return;
    }
    this.#setHealth(group, 'starting', `restarting in ${decision.delayMs} ms after: ${reason}`);
    this.#host.log(`${group.id} ${group.reason}`);
    const timer = setTimeout(() => {
      this.#restartTimers.delete(group.id);
      if (group.health === 'starting') {
        this.#relaunch(group).catch(error => this.#setHealth(group, 'failed', `could not restart: ${(error as Error).message}`));
      }
    }, decision.delayMs);
    this.#restartTimers.set(group.id, timer);
  }

  /** Every member again under its id, on fresh ports, the coordinator driving the new shard endpoints. */
  async #relaunch(group: GroupRecord): Promise<void> {
    group.restarts++;
    group.restartTimes.push(Date.now());
    const {coordinator, shards} = await layoutMembers(group.id, group.spec);
    // All members are starting before any is judged: a half-restarted group must not read as failed.
    const records = [coordinator, ...shards].map(member => {
      const record = this.#host.workers.get(member.id);
      if (record === undefined) {
        throw new RbeeError('internal', `group ${group.id} lost its member ${member.id}`);
      }
      Object.assign(record, {
        port: member.port, group: {group, membership: member.membership}, state: 'starting', reason: `restarted with group ${group.id}`,
        restarts: record.restarts + 1, lastProgressAt: new Date(), launchedAt: null, lastHeartbeat: null, lastHeartbeatAt: null, progress: null,
      } satisfies Partial<WorkerRecord>);
      record.restartTimes.push(Date.now());
      return record;
    });
    this.#setHealth(group, 'starting', null);
    for (const record of records) {
      this.#host.relaunched(record);
      const model = record.modelPath === null ? null : {ref: record.spec.model, kind: 'path' as const, path: record.modelPath, name: record.modelName};
      this.#host.run(record, record.group?.membership.role === 'shard' ? null : model);
    }
  }

  #cancelRestart(id: string): void {
    clearTimeout(this.#restartTimers.get(id));
    this.#restartTimers.delete(id);
  }

  #setHealth(group: GroupRecord, health: GroupRecord['health'], reason: string | null): void {
    group.health = health;
    group.reason = reason;
    this.#host.emit(group);
  }
}
