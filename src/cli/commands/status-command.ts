import {Command} from 'commander';
import {type AutoscaleEvent, type CatalogueList, eventStallMs, type GroupList, type HiveStatus, type WorkerInfo} from '../../protocol/wire.js';
import {globalOptions, hiveClient} from '../context.js';
import {formatAge, formatBytes, table} from '../format.js';
import type {HiveClient} from '../../protocol/hive-client.js';
import {emit} from '../output.js';

function describeStatus(status: HiveStatus): string {
  const states = Object.entries(status.workers)
    .map(([state, count]) => `${count} ${state}`)
    .join(', ');
  return [
    `hive ${status.url} (pid ${status.pid}, up ${status.uptime_seconds} s, rbee ${status.version})`,
    `devices: ${status.devices.map(device => `${device.id} ${formatBytes(device.memory_used)}/${formatBytes(device.memory_total)}`).join(', ')}`,
    `workers: ${states === '' ? 'none' : states}`,
    `models: ${status.models.length === 0 ? 'none' : status.models.join(', ')}`,
  ].join('\n');
}

function describeGroups(groups: GroupList['groups']): string {
  return groups
    .map(
      group =>
        `group ${group.group_id}: ${group.health}${group.reason === null ? '' : ` (${group.reason})`}, ${group.model} on ${group.devices.join(',')}, ${group.url}`,
    )
    .join('\n');
}

function describeWorkers(workers: Iterable<WorkerInfo>): string {
  const rows = [...workers].map(worker => [
    worker.worker_id,
    worker.model,
    worker.device,
    worker.state,
    String(worker.requests_routed),
    String(worker.tokens_relayed),
    String(worker.last_heartbeat?.queue_depth ?? 0),
    formatAge(worker.last_heartbeat_at),
  ]);
  return rows.length === 0 ? 'no workers' : table(['ID', 'MODEL', 'DEVICE', 'STATE', 'REQS', 'TOKENS', 'QUEUE', 'HEARTBEAT'], rows);
}

/** One models-on-demand decision, as a line. */
export function describeDecision(event: AutoscaleEvent): string {
  const subject = `${event.model}${event.worker_id === null ? '' : ` (${event.worker_id})`}${event.device === null ? '' : ` on ${event.device}`}`;
  return `${event.at} ${event.action} ${subject}${event.for === null ? '' : ` for ${event.for}`}: ${event.reason}`;
}

function describeCatalogue(catalogue: CatalogueList): string {
  if (catalogue.models.length === 0) {
    return '';
  }
  const entries = `catalogue: ${catalogue.models.map(entry => `${entry.name} ${entry.state}`).join(', ')}`;
  const decisions = catalogue.decisions.slice(-5).map(describeDecision);
  return [entries, ...(decisions.length === 0 ? [] : ['recent decisions:', ...decisions.map(line => `  ${line}`)])].join('\n');
}

/**
 * Follows the hive's event stream. With --json: one event per line (NDJSON), as the hive sends
 * them. Otherwise a line per change, and the table again at most once a second.
 */
async function watch(client: HiveClient, json: boolean, signal: AbortSignal): Promise<void> {
  const workers = new Map<string, WorkerInfo>();
  let lastTable = 0;
  for await (const event of client.events({signal, stallMs: eventStallMs})) {
    if (json) {
      process.stdout.write(`${JSON.stringify(event)}\n`);
      continue;
    }
    if (event.type === 'snapshot') {
      event.workers.forEach(worker => workers.set(worker.worker_id, worker));
      process.stdout.write(`watching ${event.hive.url} (Ctrl-C to stop)\n`);
    } else if (event.type === 'worker') {
      workers.set(event.worker.worker_id, event.worker);
      process.stdout.write(
        `${event.at} ${event.worker.worker_id} ${event.change}: ${event.worker.state}${event.worker.reason === null ? '' : ` (${event.worker.reason})`}\n`,
      );
    } else if (event.type === 'group') {
      const {group} = event;
      process.stdout.write(`${event.at} ${group.group_id} ${event.change}: ${group.health}${group.reason === null ? '' : ` (${group.reason})`}\n`);
    } else if (event.type === 'autoscale') {
      process.stdout.write(`${describeDecision(event)}\n`);
    } else if (event.type === 'heartbeat') {
      const known = workers.get(event.worker_id);
      if (known !== undefined) {
        workers.set(event.worker_id, {...known, last_heartbeat: event.heartbeat, last_heartbeat_at: event.at});
      }
    }
    if (Date.now() - lastTable > 1_000) {
      lastTable = Date.now();
      process.stdout.write(`${describeWorkers(workers.values())}\n\n`);
    }
  }
}

export function statusCommand(): Command {
  return new Command('status')
    .description('the hive, its devices, workers and models; --watch follows the live event stream')
    .option('--watch', 'follow heartbeats and worker changes (with --json: NDJSON, one event a line)')
    .action(async (options: {watch?: boolean}, command: Command) => {
      const global = globalOptions(command);
      const client = hiveClient(command);
      if (options.watch === true) {
        const controller = new AbortController();
        process.once('SIGINT', () => controller.abort());
        await watch(client, global.json === true, controller.signal).catch(error => {
          if (!controller.signal.aborted) {
            throw error;
          }
        });
        return;
      }
      const [status, list, groups, catalogue] = await Promise.all([client.status(), client.listWorkers(), client.listGroups(), client.catalogue()]);
      const text = () =>
        [describeStatus(status), describeCatalogue(catalogue), describeGroups(groups.groups), describeWorkers(list.workers)]
          .filter(part => part !== '')
          .join('\n\n');
      emit(global, {...status, worker_list: list.workers, groups: groups.groups, catalogue}, text);
    });
}
