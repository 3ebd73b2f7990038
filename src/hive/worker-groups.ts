/**
 * The hive's worker groups: spawning one (its members are ordinary workers, run by the supervisor),
 * following its health as its members change, ending it whole when one member is lost, and bringing
 * it back whole by its restart policy. What it needs of the supervisor comes in as `GroupHost`.
 */
import {RbeeError} from '../errors.js';
import {randomSecret} from '../http/secrets.js';
import type {ResolvedModel} from '../models/resolve-model.js';
import type {SpawnGroupRequest} from '../protocol/wire.js';
import {groupMemberRecord, layoutMembers, planGroup, type GroupPlanOptions} from './group-plan.js';
import {groupFromStored, isGroupOver, judgeGroup, memberIds, type GroupRecord} from './group-record.js';
import type {RestartScheduler} from './restart-scheduler.js';
import type {StoredGroup} from './state-store.js';
import {isAlive, type WorkerView} from './worker-record.js';
import type {WorkerTable} from './worker-table.js';

export type GroupHost = {
  /** The worker table: the groups read members there and record them through its transitions. */
  workers: WorkerTable;
  /** The hive's one restart scheduler: a group is a unit of all its members. */
  restarts: RestartScheduler;
  planOptions: () => GroupPlanOptions;
  /** Resolves the model if need be and starts the member's process. */
  run: (id: string, local: ResolvedModel | null) => void;
  /** Stops one member's process (not its group). */
  stop: (id: string, reason: string) => Promise<WorkerView>;
  /** Settles when the member's current process has ended and been accounted for. */
  ended: (id: string) => Promise<void> | undefined;
  emit: (group: GroupRecord) => void;
  spawned: (group: GroupRecord) => void;
  log: (message: string) => void;
};

export class WorkerGroups {
  readonly groups = new Map<string, GroupRecord>();
  readonly #host: GroupHost;
  /** Groups between a member's loss and their relaunch: their members' ends are expected, not judged. */
  readonly #restarting = new Set<string>();
  /** While a restarted hive re-adopts: nothing is judged until every member's liveness is known. */
  #adopting = false;

  constructor(host: GroupHost) {
    this.#host = host;
  }

  async spawn(request: SpawnGroupRequest): Promise<GroupRecord> {
    const plan = await planGroup(request, this.#host.planOptions());
    const {group} = plan;
    this.groups.set(group.id, group);
    const records = [plan.coordinator, ...plan.shards].map(member => groupMemberRecord(member, group, plan.local));
    this.#host.spawned(group);
    records.forEach(record => this.#host.workers.add(record, 'spawned'));
    for (const record of records) {
      this.#host.run(record.id, record.group?.membership.role === 'shard' ? null : plan.local);
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
    // Also a failed group, or one waiting to restart: stopped on request, it does not come back.
    if (group.health !== 'stopped') {
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

  /**
   * Re-adoption after a hive restart: `check` settles every member's liveness with nothing judged
   * meanwhile (a group judged on its first dead member would signal siblings whose pids are not
   * checked yet); then each group is judged once. A group found broken is ended, not restarted,
   * as a lone worker found gone is not.
   */
  adoptAll(check: () => void): void {
    this.#adopting = true;
    try {
      check();
    } finally {
      this.#adopting = false;
    }
    for (const group of this.groups.values()) {
      this.#judge(group, {restart: false});
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
  onMemberChange(record: WorkerView): void {
    const group = record.group?.group;
    if (group !== undefined && !this.#adopting) {
      this.#judge(group, {restart: true});
    }
  }

  #judge(group: GroupRecord, options: {restart: boolean}): void {
    if (isGroupOver(group.health) || this.#restarting.has(group.id)) {
      return;
    }
    const ids = memberIds(group);
    const members = ids.map(id => this.#host.workers.get(id)).filter(member => member !== undefined);
    const missing = ids.filter(id => !this.#host.workers.has(id));
    // A member the hive no longer knows (its row was over when a restarted hive read them) is gone too.
    const verdict =
      missing.length > 0 ? {health: 'failed' as const, reason: `member ${missing.join(', ')} is gone (not re-adopted)`} : judgeGroup(group, members);
    if (verdict.health === group.health && verdict.reason === group.reason) {
      return;
    }
    if (verdict.health !== 'failed') {
      this.#setHealth(group, verdict.health, verdict.reason);
      return;
    }
    const reason = verdict.reason ?? 'a member failed';
    const decision =
      options.restart && missing.length === 0
        ? this.#host.restarts.schedule(group.id, group.spec.restart, 'failure', () => this.#relaunchOnceEnded(group))
        : {restart: false as const, why: 'found broken when the hive restarted'};
    this.#host.log(`${group.id} failed: ${reason}; stopping its other members`);
    if (decision.restart) {
      // Starting again, not failed: scripts waiting on it and requests for its model are told to wait.
      this.#restarting.add(group.id);
      this.#setHealth(group, 'starting', `restarting in ${decision.delayMs} ms after: ${reason}`);
    } else {
      this.#setHealth(group, 'failed', group.restarts > 0 ? `${reason}; ${decision.why}` : reason);
    }
    for (const member of members) {
      if (isAlive(member.state) && member.state !== 'stopping') {
        void this.#host.stop(member.id, `group ${group.id} failed: ${reason}`);
      }
    }
  }

  /** After the backoff: the group comes back whole once every member's process is gone. */
  #relaunchOnceEnded(group: GroupRecord): void {
    void Promise.all(memberIds(group).map(id => this.#host.ended(id))).then(() => {
      if (this.#restarting.has(group.id)) {
        this.#relaunch(group).catch(error => {
          this.#restarting.delete(group.id);
          this.#setHealth(group, 'failed', `could not restart: ${(error as Error).message}`);
        });
      }
    });
  }

  /** Every member again under its id, on fresh ports, the coordinator driving the new shard endpoints. */
  async #relaunch(group: GroupRecord): Promise<void> {
    const {coordinator, shards} = await layoutMembers(group.id, group.spec);
    if (!this.#restarting.has(group.id)) {
      return; // stopped while the ports were found
    }
    const members = [coordinator, ...shards];
    const lost = members.find(member => !this.#host.workers.has(member.id));
    if (lost !== undefined) {
      throw new RbeeError('internal', `group ${group.id} lost its member ${lost.id}`);
    }
    group.restarts++;
    group.launchSecret = randomSecret();
    // All members are starting before any is judged (#restarting holds until then): a half-restarted group must not read as failed.
    for (const member of members) {
      this.#host.workers.relaunching(member.id, {port: member.port, group: {group, membership: member.membership}, reason: `restarted with group ${group.id}`});
    }
    this.#restarting.delete(group.id);
    this.#setHealth(group, 'starting', null);
    for (const member of members) {
      const record = this.#host.workers.require(member.id);
      const model = record.modelPath === null ? null : {ref: record.spec.model, kind: 'path' as const, path: record.modelPath, name: record.modelName};
      this.#host.run(record.id, member.membership.role === 'shard' ? null : model);
    }
  }

  #cancelRestart(id: string): void {
    this.#host.restarts.cancel(id);
    this.#restarting.delete(id);
  }

  #setHealth(group: GroupRecord, health: GroupRecord['health'], reason: string | null): void {
    group.health = health;
    group.reason = reason;
    this.#host.emit(group);
  }
}
