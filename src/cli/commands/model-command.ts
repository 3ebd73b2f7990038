import {Command} from 'commander';
import {modelsDir, rbeeHome} from '../../config/env.js';
import {makeDirectory} from '../../config/make-directory.js';
import {createProgressBar} from '../../models/progress-bar.js';
import {globalOptions} from '../context.js';
import {emit} from '../output.js';

export function modelCommand(): Command {
  const model = new Command('model').description('models in the local cache (RBEE_HOME/models)');
  model.command('pull')
    .description('download (or assemble) a model into the cache, with a progress bar')
    .argument('<model>', 'hf:org/repo:file.gguf, "default", or a local GGUF path to check')
    .action(async (reference: string, _options: unknown, command: Command) => {
      const {resolveModel} = await import('../../models/resolve-model.js');
      const bar = createProgressBar({label: reference});
      makeDirectory(rbeeHome(), 'RBEE_HOME');
      const resolved = await resolveModel(reference, {modelsDir: modelsDir(), onProgress: progress => bar.update(progress)}).finally(() => bar.done());
      emit(globalOptions(command), resolved, () => `${resolved.name}: ${resolved.path}`);
    });
  return model;
}
