import {Command} from 'commander';
import {modelsDir, rbeeHome} from '../../config/env.js';
import {ensurePrivateDir} from '../../config/private-home.js';
import {isRbeeError, RbeeError} from '../../errors.js';
import {createProgressBar} from '../../models/progress-bar.js';
import type {WorkerList} from '../../protocol/wire.js';
import {globalOptions, hiveClient} from '../context.js';
import {formatBytes, table} from '../format.js';
import {emit} from '../output.js';

/**
 * Which live workers use each model file, by path, asked of the hive the CLI would talk to. No hive
 * answering means no worker runs (workers end without their hive), so nothing is in use.
 */
async function usersByPath(command: Command): Promise<Map<string, string[]>> {
  const users = new Map<string, string[]>();
  let list: WorkerList;
  try {
    list = await hiveClient(command, 5_000).listWorkers();
  } catch (error) {
    if (isRbeeError(error) && error.code === 'hive_unreachable') {
      return users;
    }
    throw error;
  }
  for (const worker of list.workers) {
    if (worker.model_path !== null && worker.state !== 'stopped' && worker.state !== 'failed') {
      users.set(worker.model_path, [...(users.get(worker.model_path) ?? []), worker.worker_id]);
    }
  }
  return users;
}

export function modelCommand(): Command {
  const model = new Command('model').description('models in the local cache (RBEE_HOME/models)');
  model
    .command('pull')
    .description('download (or assemble) a model into the cache, with a progress bar')
    .argument('<model>', 'hf:org/repo:file.gguf, "default", or a local GGUF path to check')
    .option('--force', 'download (or assemble) it again even if the cache has it, e.g. after a "damaged cache entry" error')
    .action(async (reference: string, options: {force?: boolean}, command: Command) => {
      const {resolveModel} = await import('../../models/resolve-model.js');
      ensurePrivateDir(rbeeHome());
      const bar = createProgressBar({label: reference});
      // A pull hashes a cached copy whole: it is how a user checks the cache, not just fills it.
      const resolved = await resolveModel(reference, {
        modelsDir: modelsDir(),
        onProgress: progress => bar.update(progress),
        verify: 'full',
        force: options.force === true,
      }).finally(() => bar.done());
      emit(globalOptions(command), resolved, () => `${resolved.name}: ${resolved.path}`);
    });

  model
    .command('list')
    .description('cached models: reference, size, sha256 (from the checksum sidecar), path, and the workers using each')
    .action(async (_options: unknown, command: Command) => {
      const {listCachedModels} = await import('../../models/model-cache.js');
      const dir = modelsDir();
      const users = await usersByPath(command);
      const models = listCachedModels(dir).map(entry => ({...entry, used_by: users.get(entry.path) ?? []}));
      emit(globalOptions(command), {models_dir: dir, models}, () =>
        models.length === 0
          ? `no models in ${dir} (fetch one: rbee model pull default)`
          : table(
              ['MODEL', 'SIZE', 'SHA256', 'USED BY', 'PATH'],
              models.map(entry => [entry.ref, formatBytes(entry.size), entry.sha256?.slice(0, 12) ?? '-', entry.used_by.join(',') || '-', entry.path]),
            ),
      );
    });

  model
    .command('rm')
    .description('delete a cached model (and its sidecar); refused while a worker uses it unless --force')
    .argument('<model>', "a reference as `model list` shows it (default, hf:…) or the cached file's path")
    .option('--force', 'delete even while workers use it (they keep the open file until they end)')
    .action(async (reference: string, options: {force?: boolean}, command: Command) => {
      const {findCachedModel, removeCachedModel} = await import('../../models/model-cache.js');
      const dir = modelsDir();
      const entry = findCachedModel(dir, reference);
      const users = (await usersByPath(command)).get(entry.path) ?? [];
      if (users.length > 0 && options.force !== true) {
        throw new RbeeError(
          'invalid_request',
          `${entry.ref} is in use by ${users.join(', ')}: stop ${users.length > 1 ? 'them' : 'it'} first, or pass --force`,
        );
      }
      removeCachedModel(dir, entry);
      emit(globalOptions(command), {removed: entry, used_by: users}, () => `removed ${entry.ref} (${formatBytes(entry.size)}, ${entry.path})`);
    });
  return model;
}
