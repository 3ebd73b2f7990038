import {Command, Argument} from 'commander';
import {createProgressBar} from '../../models/progress-bar.js';
import {globalOptions} from '../context.js';
import {emit} from '../output.js';
import {integerFlag} from '../parse-flags.js';

export function enginesCommand(): Command {
  const engines = new Command('engines').description('inference engines rbee can build or find for its adapters');
  engines
    .command('install')
    .description('build an engine from sources a package registry carries (cached; nothing downloads at build time)')
    .addArgument(new Argument('<engine>', 'engine to install').choices(['llama.cpp']))
    .option('--jobs <n>', 'parallel compile jobs', integerFlag('--jobs', 1, 256))
    .option('--verbose', 'print the compiler output')
    .action(async (_engine: string, options: {jobs?: number; verbose?: boolean}, command: Command) => {
      const {installLlamaCpp} = await import('../../engines/llama-cpp-build.js');
      const bar = createProgressBar({label: 'llama.cpp'});
      const installed = await installLlamaCpp({
        ...(options.jobs === undefined ? {} : {jobs: options.jobs}),
        onProgress: progress => {
          if (progress.phase === 'build') {
            bar.update({phase: 'building', done: progress.done, total: progress.total, unit: 'steps'});
          }
        },
        ...(options.verbose === true ? {log: (line: string) => process.stderr.write(`${line}\n`)} : {}),
      }).finally(() => bar.done());
      emit(globalOptions(command), installed, () =>
        Object.entries(installed.programs)
          .map(([name, file]) => `${name}: ${file}`)
          .join('\n'),
      );
    });
  engines
    .command('list')
    .description('engines found on this machine')
    .action(async (_options: unknown, command: Command) => {
      const {findLlamaCpp, llamaCppCacheDir} = await import('../../engines/llama-cpp-build.js');
      const llamaCpp = findLlamaCpp();
      const list = {engines: [{name: 'llama.cpp', installed: llamaCpp !== null, location: llamaCpp?.binDir ?? llamaCppCacheDir()}]};
      emit(globalOptions(command), list, () =>
        list.engines.map(engine => `${engine.name}: ${engine.installed ? engine.location : `not installed (rbee engines install ${engine.name})`}`).join('\n'),
      );
    });
  return engines;
}
