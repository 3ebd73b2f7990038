/**
 * Worker groups from the command line: `rbee worker spawn-group` (one model over several devices,
 * one endpoint) and `rbee worker groups`. Stopping goes through `rbee worker stop <group-id>`.
 */
import path from 'node:path';
import {Command, Option} from 'commander';
import {RbeeError} from '../../errors.js';
import {createProgressBar} from '../../models/progress-bar.js';
import type {GroupInfo, GroupList, SpawnGroupRequestInput, WorkerInfo} from '../../protocol/wire.js';
import {globalOptions, hiveClient} from '../context.js';
import {table} from '../format.js';
import type {HiveClient} from '../hive-client.js';
import {emit} from '../output.js';
import {integerFlag} from '../parse-flags.js';

type SpawnGroupOptions = {
  model: string;
  devices: string[];
  type?: string;
  coordinatorPort?: number;
  contextSize?: number;
  threads?: number;
  parallel?: number;
  force?: boolean;
  wait?: boolean;
  timeout: number;
};

export function describeGroup(group: GroupInfo): string {
  const reason = group.reason === null ? '' : ` (${group.reason})`;
  const shards = group.workers.map(worker => `${worker.worker_id} on ${worker.device}`).join(', ');
  return `${group.group_id}  ${group.health}${reason}  ${group.model}  ${group.url}\n  coordinator ${group.coordinator.worker_id} on ${group.coordinator.device}; shards ${shards}`;
}

/** How far a member has got, out of 1000: a download or load in progress, or all of it once it serves. */
function memberProgress(worker: WorkerInfo): number {
  if (worker.state === 'ready' || worker.state === 'busy') {
    return 1000;
  }
  const progress = worker.progress;
  if (progress === null || progress.total === null || progress.total === 0) {
    return 0;
  }
  // A download is the first half of a member's way, its load the second.
  const fraction = Math.min(1, progress.done / progress.total);
  return Math.round(progress.phase === 'loading' ? 500 + 500 * fraction : 500 * fraction);
}

/** Polls until every member serves (healthy) or the group fails; one bar for the whole group on a terminal. */
async function waitUntilHealthy(client: HiveClient, group: GroupInfo, timeoutSeconds: number): Promise<GroupInfo> {
  const deadline = Date.now() + timeoutSeconds * 1000;
  const bar = createProgressBar({label: group.group_id});
  const ids = [group.coordinator.worker_id, ...group.workers.map(worker => worker.worker_id)];
  let current = group;
  try {
    while (current.health === 'starting') {
      if (Date.now() > deadline) {
        throw new RbeeError('timeout', `group ${current.group_id} was not healthy after ${timeoutSeconds} s (${current.health})`);
      }
      await new Promise(resolve => setTimeout(resolve, 250));
      const [latest, members] = await Promise.all([
        client.get<GroupInfo>(`/v1/groups/${current.group_id}`),
        Promise.all(ids.map(id => client.get<WorkerInfo>(`/v1/workers/${id}`))),
      ]);
      current = latest;
      const ready = members.filter(member => member.state === 'ready' || member.state === 'busy').length;
      bar.update({
        phase: 'loading',
        done: members.reduce((sum, member) => sum + memberProgress(member), 0),
        total: members.length * 1000,
        unit: 'steps',
        detail: `${ready}/${members.length} members ready`,
      });
    }
  } finally {
    bar.done();
  }
  if (current.health !== 'healthy') {
    throw new RbeeError('worker_failed', `group ${current.group_id} ${current.health}: ${current.reason ?? 'no reason given'}`);
  }
  return current;
}

function deviceList(value: string): string[] {
  const devices = value.split(',').map(device => device.trim()).filter(device => device !== '');
  if (devices.length < 2) {
    throw new RbeeError('invalid_request', '--devices: name at least two devices, comma-separated (e.g. cuda:0,cuda:1)');
  }
  return devices;
}

export function spawnGroupCommand(): Command {
  return new Command('spawn-group')
    .description('spawn one model sharded over several devices: a coordinator (one endpoint) and a shard per extra device')
    .addOption(new Option('--model <model>', 'a GGUF path, hf:org/repo:file.gguf, or "default"').env('RBEE_MODEL').makeOptionMandatory())
    .addOption(new Option('--devices <list>', 'comma-separated, the coordinator\'s first: cuda:0,cuda:1 ("cpu" may repeat)').env('RBEE_DEVICES').argParser(deviceList).makeOptionMandatory())
    .addOption(new Option('--type <type>', 'worker type (default: the first that can run groups, llamacpp)').env('RBEE_WORKER_TYPE'))
    .option('--coordinator-port <port>', 'the group\'s endpoint port (default: a free one)', integerFlag('--coordinator-port', 1, 65_535))
    .addOption(new Option('--context-size <tokens>', 'context per parallel request').env('RBEE_CONTEXT_SIZE').argParser(integerFlag('--context-size', 128, 1_048_576)))
    .addOption(new Option('--threads <n>', 'CPU threads per member').env('RBEE_THREADS').argParser(integerFlag('--threads', 1, 1_024)))
    .option('--parallel <n>', 'requests generated at once', integerFlag('--parallel', 1, 64))
    .option('--force', 'spawn even if the model looks larger than the devices have free')
    .option('--wait', 'return only once every member serves (or the group failed)')
    .addOption(new Option('--timeout <seconds>', 'with --wait: give up after this long').env('RBEE_TIMEOUT').argParser(integerFlag('--timeout', 1, 86_400)).default(600))
    .action(async (options: SpawnGroupOptions, command: Command) => {
      const client = hiveClient(command);
      const request: SpawnGroupRequestInput = {
        model: options.model === 'default' || options.model.startsWith('hf:') ? options.model : path.resolve(options.model),
        devices: options.devices,
        ...(options.type === undefined ? {} : {type: options.type}),
        ...(options.coordinatorPort === undefined ? {} : {coordinator_port: options.coordinatorPort}),
        ...(options.contextSize === undefined ? {} : {context_size: options.contextSize}),
        ...(options.threads === undefined ? {} : {threads: options.threads}),
        ...(options.parallel === undefined ? {} : {parallel: options.parallel}),
        force: options.force === true,
      };
      let group = await client.post<GroupInfo>('/v1/groups', request);
      if (options.wait === true) {
        group = await waitUntilHealthy(client, group, options.timeout);
      }
      emit(globalOptions(command), group, () => describeGroup(group));
    });
}

export function groupsCommand(): Command {
  return new Command('groups')
    .description('list worker groups, their health and members')
    .option('--all', 'include stopped and failed groups')
    .action(async (options: {all?: boolean}, command: Command) => {
      const list = await hiveClient(command).get<GroupList>(`/v1/groups${options.all === true ? '?all=1' : ''}`);
      emit(globalOptions(command), list, () => list.groups.length === 0
        ? 'no worker groups (spawn one: rbee worker spawn-group --model default --devices cuda:0,cuda:1 --wait)'
        : table(['GROUP', 'HEALTH', 'MODEL', 'DEVICES', 'COORDINATOR', 'URL'], list.groups.map(group => [
          group.group_id, group.health, group.model, group.devices.join(','), group.coordinator.worker_id, group.url,
        ])));
    });
}
