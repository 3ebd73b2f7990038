import {Command} from 'commander';
import {formatDuration} from '../../config/duration.js';
import {globalOptions, hiveClient} from '../context.js';
import {table} from '../format.js';
import {emit} from '../output.js';

/** `rbee models`: the hive's model catalogue (models on demand), each entry with its state. */
export function modelsCommand(): Command {
  return new Command('models')
    .description('the model catalogue (rbee.config models): each name, its state (cold, starting, ready, idle), worker and idle timeout')
    .action(async (_options: unknown, command: Command) => {
      const list = await hiveClient(command).catalogue();
      emit(globalOptions(command), list, () =>
        list.models.length === 0
          ? 'the catalogue is empty: add models to rbee.config.ts (models: {name: {model: …}}) and restart the hive'
          : table(
              ['NAME', 'STATE', 'MODEL', 'DEVICE', 'WORKER', 'IDLE SINCE', 'STOPS WHEN IDLE'],
              list.models.map(entry => [
                entry.name,
                entry.state,
                entry.model,
                entry.device,
                entry.worker_id ?? '-',
                entry.idle_since ?? '-',
                entry.pinned ? 'never (pinned)' : entry.idle_timeout_ms === null ? '-' : `after ${formatDuration(entry.idle_timeout_ms)}`,
              ]),
            ),
      );
    });
}
