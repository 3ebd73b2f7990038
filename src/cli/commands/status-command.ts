import {Command} from 'commander';
import type {HiveStatus, WorkerList} from '../../protocol/wire.js';
import {globalOptions, hiveClient} from '../context.js';
import {formatBytes} from '../format.js';
import {emit} from '../output.js';

export function statusCommand(): Command {
  return new Command('status')
    .description('the hive, its devices, workers and models')
    .action(async (_options: unknown, command: Command) => {
      const client = hiveClient(command);
      const [status, list] = await Promise.all([client.get<HiveStatus>('/v1/status'), client.get<WorkerList>('/v1/workers')]);
      emit(globalOptions(command), {...status, worker_list: list.workers}, () => {
        const states = Object.entries(status.workers).map(([state, count]) => `${count} ${state}`).join(', ');
        return [
          `hive ${status.url} (pid ${status.pid}, up ${status.uptime_seconds} s, rbee ${status.version})`,
          `devices: ${status.devices.map(device => `${device.id} ${formatBytes(device.memory_used)}/${formatBytes(device.memory_total)}`).join(', ')}`,
          `workers: ${states === '' ? 'none' : states}`,
          `models: ${status.models.length === 0 ? 'none' : status.models.join(', ')}`,
        ].join('\n');
      });
    });
}
