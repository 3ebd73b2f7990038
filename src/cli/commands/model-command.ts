import {Command} from 'commander';
import {modelsDir, rbeeHome} from '../../config/env.js';
import {ensurePrivateDir} from '../../config/private-home.js';
import {createProgressBar} from '../../models/progress-bar.js';
import {globalOptions} from '../context.js';
import {emit} from '../output.js';

export function modelCommand(): Command {
  const model = new Command('model').description('models in the local cache (RBEE_HOME/models)');
  model.command('pull')
    .description('download (or assemble) a model into the cache, with a progress bar')
    .argument('<model>', 'hf:org/repo:file.gguf, "default", or a local GGUF path to check')
    .option('--force', 'download (or assemble) it again even if the cache has it, e.g. after a "damaged cache entry" error')
    .action(async (reference: string, options: {force?: boolean}, command: Command) => {
      const {resolveModel} = await import('../../models/resolve-model.js');
      ensurePrivateDir(rbeeHome());
      const bar = createProgressBar({label: reference});
      // A pull hashes a cached copy whole: it is how a user checks the cache, not just fills it.
      const resolved = await resolveModel(reference, {
        modelsDir: modelsDir(), onProgress: progress => bar.update(progress), verify: 'full', force: options.force === true,
      }).finally(() => bar.done());
      emit(globalOptions(command), resolved, () => `${resolved.name}: ${resolved.path}`);
    });
  return model;
}
