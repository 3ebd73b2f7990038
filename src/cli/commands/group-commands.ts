/**
 * Worker groups from the command line: `rbee worker spawn-group` (one model over several devices,
 * one endpoint) and `rbee worker groups`. Stopping goes through `rbee worker stop <group-id>`.
 */
import {Command, Option} from 'commander';
import {RbeeError} from '../../errors.js';
import {createProgressBar} from '../../models/progress-bar.js';
import type {GroupInfo, RestartPolicy, SpawnGroupRequestInput, WorkerInfo} from '../../protocol/wire.js';
import {globalOptions, hiveClient} from '../context.js';
import {table} from '../format.js';
import type {HiveClient} from '../../protocol/hive-client.js';
import {emit} from '../output.js';
import {integerFlag} from '../parse-flags.js';
import {
  lifetimeFields,
  lifetimeOptions,
  modelOption,
  modelReference,
  shapeFields,
  shapeOptions,
  timeoutOption,
  type SpawnLifetime,
  type SpawnShape,
} from './spawn-options.js';

type SpawnGroupOptions = SpawnShape &
  SpawnLifetime & {
    devices: string[];
    type?: string;
    coordinatorPort?: number;
    restart: RestartPolicy;
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
      const [latest, members] = await Promise.all([client.getGroup(current.group_id), Promise.all(ids.map(id => client.getWorker(id)))]);
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
  const devices = value
    .split(',')
    .map(device => device.trim())
    .filter(device => device !== '');
  if (devices.length < 2) {
    throw new RbeeError('invalid_request', '--devices: name at least two devices, comma-separated (e.g. cuda:0,cuda:1)');
  }
  return devices;
}

export function spawnGroupCommand(): Command {
  const command = new Command('spawn-group')
    .description('spawn one model sharded over several devices: a coordinator (one endpoint) and a shard per extra device')
    .addOption(modelOption())
    .addOption(
      new Option('--devices <list>', 'comma-separated, the coordinator\'s first: cuda:0,cuda:1 ("cpu" may repeat)')
        .env('RBEE_DEVICES')
        .argParser(deviceList)
        .makeOptionMandatory(),
    )
    .addOption(
      new Option('--type <type>', 'worker type (default: the fastest that can run groups on the first device, by what the adapters declare)').env(
        'RBEE_WORKER_TYPE',
      ),
    )
    .option('--coordinator-port <port>', "the group's endpoint port (default: a free one)", integerFlag('--coordinator-port', 1, 65_535))
    .addOption(
      new Option('--restart <policy>', 'after a member fails, spawn the whole group again').choices(['never', 'on-failure', 'always']).default('on-failure'),
    )
    .option('--force', 'spawn even if the model looks larger than the devices have free')
    .option('--wait', 'return only once every member serves (or the group failed)')
    .addOption(timeoutOption())
    .action(async (options: SpawnGroupOptions, sub: Command) => {
      const client = hiveClient(sub);
      const request: SpawnGroupRequestInput = {
        model: modelReference(options.model),
        devices: options.devices,
        // An empty RBEE_WORKER_TYPE (set, but to nothing) leaves the choice to the hive.
        ...(options.type === undefined || options.type === '' ? {} : {type: options.type}),
        ...(options.coordinatorPort === undefined ? {} : {coordinator_port: options.coordinatorPort}),
        ...shapeFields(options),
        ...lifetimeFields(options),
        restart: options.restart,
        force: options.force === true,
      };
      let group = await client.spawnGroup(request);
      if (options.wait === true) {
        group = await waitUntilHealthy(client, group, options.timeout);
      }
      emit(globalOptions(sub), group, () => describeGroup(group));
    });
  [...shapeOptions('CPU threads per member'), ...lifetimeOptions('group')].forEach(option => command.addOption(option));
  return command;
}

export function groupsCommand(): Command {
  return new Command('groups')
    .description('list worker groups, their health and members')
    .option('--all', 'include stopped and failed groups')
    .action(async (options: {all?: boolean}, command: Command) => {
      const list = await hiveClient(command).listGroups({all: options.all === true});
      emit(globalOptions(command), list, () =>
        list.groups.length === 0
          ? 'no worker groups (spawn one: rbee worker spawn-group --model default --devices cuda:0,cuda:1 --wait)'
          : table(
              ['GROUP', 'HEALTH', 'MODEL', 'DEVICES', 'COORDINATOR', 'URL'],
              list.groups.map(group => [group.group_id, group.health, group.model, group.devices.join(','), group.coordinator.worker_id, group.url]),
            ),
      );
    });
}
