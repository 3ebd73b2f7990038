/**
 * Turns a spawn-group request into its members before anything starts: the coordinator on the
 * first device, a shard on each of the others, each with its worker port, and each shard with the
 * engine endpoint its coordinator will drive. Bad requests are refused here, as a 4xx, with nothing
 * recorded: an unknown device, a type that cannot shard, a taken port, a model that does not fit.
 */
import {randomUUID} from 'node:crypto';
import {randomSecret} from '../http/secrets.js';
import {RbeeError} from '../errors.js';
import {freePort, isPortFree} from '../http/free-port.js';
import {parseModelRef} from '../models/model-ref.js';
import type {ResolvedModel} from '../models/resolve-model.js';
import type {GroupMembership, SpawnGroupRequest, SpawnWorkerRequest} from '../protocol/wire.js';
import {workerDefaults} from '../worker/worker-defaults.js';
import {estimateMemory, freeMemory} from './admission.js';
import type {GroupRecord, GroupSpec} from './group-record.js';
import {checkRunsOn, defaultWorkerType} from './default-worker-type.js';
import {checkTypeAndDevice, resolveAllowedModel, type SpawnCheckOptions} from './spawn-checks.js';
import {createWorkerRecord, type WorkerRecord} from './worker-record.js';

export type GroupPlanOptions = SpawnCheckOptions & {
  /** Worker types whose adapter can run as a coordinator or a shard. */
  groupTypes: string[];
  /** What workers still loading on a device will take. */
  reservedOn: (device: string) => number;
  /**
   * The adapters' own checks of a group (their `checkGroup`), for the types that have one: throws when
   * the model cannot be split so. Such a type's model is resolved at planning, whatever the reference,
   * since the check and every rank need the file.
   */
  checkGroup?: {types: string[]; check: (type: string, modelPath: string, devices: string[]) => Promise<void>} | undefined;
};

export type PlannedMember = {id: string; spec: SpawnWorkerRequest; port: number; membership: GroupMembership};

export type GroupPlan = {group: GroupRecord; coordinator: PlannedMember; shards: PlannedMember[]; local: ResolvedModel | null};

/** Refuses a type that cannot run groups (or a hive with none that can) before anything else is looked at. */
function checkGroupType(request: SpawnGroupRequest, options: GroupPlanOptions): void {
  if (options.groupTypes.length === 0) {
    throw new RbeeError('invalid_request', 'no loaded adapter can run worker groups (none declares `groups: true`): see `rbee adapter list`');
  }
  if (request.type !== undefined && !options.groupTypes.includes(request.type)) {
    throw new RbeeError('invalid_request', `type: worker type "${request.type}" cannot run worker groups; types that can: ${options.groupTypes.join(', ')}`, {
      field: 'type',
    });
  }
}

/**
 * The group's worker type: the one asked for, or the fastest of the group-capable types that run
 * on the first device (by what their adapters declare). Every device must be one the type runs on.
 */
async function groupType(request: SpawnGroupRequest, options: GroupPlanOptions): Promise<string> {
  const offers = (await options.workerTypeSupport()).filter(offer => options.groupTypes.includes(offer.type));
  const type = request.type ?? defaultWorkerType(request.devices[0]!, offers);
  for (const device of new Set(request.devices)) {
    checkRunsOn(type, device, offers);
  }
  return type;
}

function checkDevices(devices: readonly string[], type: string | undefined, options: GroupPlanOptions): void {
  const seen = new Set<string>();
  for (const device of devices) {
    checkTypeAndDevice({device, type}, options);
    // Two shards on one GPU would only split its memory; on the CPU, processes are the point.
    if (device !== 'cpu' && seen.has(device)) {
      throw new RbeeError('invalid_request', `devices: ${device} is named twice; each GPU holds one member of a group`);
    }
    seen.add(device);
  }
}

/** The whole model against what the group's devices have free together. */
function devicesMemory(devices: readonly string[], options: GroupPlanOptions): number {
  return [...new Set(devices)].reduce((sum, device) => sum + (options.devices.find(known => known.id === device)?.memory_total ?? 0), 0);
}

async function admitGroup(request: SpawnGroupRequest, model: ResolvedModel, options: GroupPlanOptions): Promise<number> {
  const contextSize = request.context_size ?? options.defaults.contextSize ?? workerDefaults.contextSize;
  const parallel = request.parallel ?? options.defaults.parallel ?? workerDefaults.parallel;
  const estimate = await estimateMemory({modelPath: model.path, device: request.devices[0]!, contextSize, parallel});
  const unique = [...new Set(request.devices)];
  let free = 0;
  for (const device of unique) {
    free += Math.max(0, (await (options.memoryProbe ?? freeMemory)(device)) - options.reservedOn(device));
  }
  if (estimate.total > free && !request.force) {
    const mib = (bytes: number) => `${Math.round(bytes / 1024 / 1024)} MiB`;
    throw new RbeeError(
      'insufficient_memory',
      `the model needs about ${mib(estimate.total)} but ${unique.join(', ')} have ${mib(free)} free together; add devices, lower context_size/parallel, or pass force`,
    );
  }
  return estimate.total;
}

/**
 * The members' ids, specs, ports and memberships: the coordinator `<group>-0` on the first device,
 * shard `<group>-i` on each other one, each shard with an engine endpoint of its own. Ports are
 * fresh each time, so a group restarted after a failure is laid out anew under the same ids.
 */
export async function layoutMembers(groupId: string, request: GroupSpec): Promise<{coordinator: PlannedMember; shards: PlannedMember[]}> {
  const coordinatorId = `${groupId}-0`;
  const spec = (device: string): SpawnWorkerRequest => ({
    model: request.model,
    device,
    type: request.type,
    ...(request.context_size === undefined ? {} : {context_size: request.context_size}),
    ...(request.threads === undefined ? {} : {threads: request.threads}),
    ...(request.parallel === undefined ? {} : {parallel: request.parallel}),
    ...(request.heartbeat_interval_ms === undefined ? {} : {heartbeat_interval_ms: request.heartbeat_interval_ms}),
    // A group comes back whole or not at all (the group's own policy): a lone member restarting cannot rejoin its layers.
    restart: 'never',
    force: true,
    dry_run: false,
  });
  const base = {group_id: groupId, coordinator: coordinatorId, devices: request.devices};
  const shards: PlannedMember[] = [];
  for (const [index, device] of request.devices.slice(1).entries()) {
    shards.push({
      id: `${groupId}-${index + 1}`,
      spec: spec(device),
      port: await freePort(),
      membership: {...base, role: 'shard', rank: index + 1, endpoint: `127.0.0.1:${await freePort()}`, shards: []},
    });
  }
  const coordinator: PlannedMember = {
    id: coordinatorId,
    // The group's one endpoint answers to its name and carries its idle timeout: stopping it stops the group.
    spec: {
      ...spec(request.devices[0]!),
      ...(request.name === undefined ? {} : {name: request.name}),
      ...(request.idle_timeout_ms === undefined ? {} : {idle_timeout_ms: request.idle_timeout_ms}),
    },
    port: request.coordinator_port ?? (await freePort()),
    membership: {
      ...base,
      role: 'coordinator',
      rank: 0,
      endpoint: null,
      shards: shards.map(shard => ({
        worker_id: shard.id,
        device: shard.spec.device,
        url: `http://127.0.0.1:${shard.port}`,
        endpoint: shard.membership.endpoint!,
      })),
    },
  };
  return {coordinator, shards};
}

export async function planGroup(request: SpawnGroupRequest, options: GroupPlanOptions): Promise<GroupPlan> {
  checkGroupType(request, options);
  checkDevices(request.devices, request.type, options);
  const type = await groupType(request, options);
  if (request.coordinator_port !== undefined && !(await isPortFree(request.coordinator_port))) {
    throw new RbeeError('port_in_use', `coordinator_port: port ${request.coordinator_port} is already in use`);
  }
  const checked = options.checkGroup?.types.includes(type) === true;
  const local = parseModelRef(request.model).kind === 'path' || checked ? await resolveAllowedModel(request.model, type, options) : null;
  if (local !== null && checked) {
    await options.checkGroup!.check(type, local.path, request.devices);
  }
  const modelBytes = local === null ? 0 : await admitGroup(request, local, options);

  const groupId = `group-${randomUUID().slice(0, 8)}`;
  const {coordinator, shards} = await layoutMembers(groupId, {...request, type});
  const group: GroupRecord = {
    id: groupId,
    spec: {...request, type},
    coordinatorId: coordinator.id,
    shardIds: shards.map(shard => shard.id),
    health: 'starting',
    reason: null,
    startedAt: new Date(),
    modelBytes,
    totalBytes: devicesMemory(request.devices, options),
    restarts: 0,
    launchSecret: randomSecret(),
  };
  return {group, coordinator, shards, local};
}

/** A planned member as a worker record: a shard is never routed to. */
export function groupMemberRecord(member: PlannedMember, group: GroupRecord, local: ResolvedModel | null): WorkerRecord {
  const shard = member.membership.role === 'shard';
  const record = createWorkerRecord({
    id: member.id,
    spec: member.spec,
    modelName: local?.name ?? member.spec.model,
    // A shard of a file model gets its path (a candle rank reads its own slice; llama.cpp's ignores it).
    modelPath: local?.path ?? null,
    port: member.port,
    secret: randomSecret(),
    group: {group, membership: member.membership},
    ...(shard ? {aliases: new Set<string>()} : {}),
  });
  return record;
}
