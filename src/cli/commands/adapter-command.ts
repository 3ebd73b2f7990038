import path from 'node:path';
import {Command} from 'commander';
import {RbeeError} from '../../errors.js';
import {globalOptions} from '../context.js';
import {table} from '../format.js';
import {emit} from '../output.js';

type ConfigOption = {config?: string};

async function loadLocalConfig(options: ConfigOption) {
  const {loadConfig} = await import('../../config/load-config.js');
  const explicitPath = options.config ?? process.env.RBEE_CONFIG;
  return loadConfig(explicitPath === undefined || explicitPath === '' ? {} : {explicitPath});
}

/** Package names stay as they are; paths are stored relative to the config file, which is where they are resolved. */
function specifierFor(spec: string, configDir: string): string {
  if (!spec.startsWith('.') && !path.isAbsolute(spec)) {
    return spec;
  }
  const relative = path.relative(configDir, path.resolve(spec));
  return relative.startsWith('.') ? relative : `./${relative}`;
}

export function adapterCommand(): Command {
  const adapter = new Command('adapter').description('adapter plugins: engines beyond the built-in ones');

  adapter.command('add')
    .description('check that a package or file exports an adapter, then record it in the config')
    .argument('<plugin>', 'an npm package name (installed) or a path to a module or package folder')
    .option('--config <file>', 'config file to record it in (default: the one found, else ./rbee.config.json)')
    .action(async (spec: string, options: ConfigOption, command: Command) => {
      const [{importAdapter}, {editConfigFile, isEditableConfig}, {adaptersOf}] = await Promise.all([
        import('../../adapters/load-adapters.js'), import('../../config/edit-config.js'), import('../../adapters/configured-adapters.js'),
      ]);
      const loaded = await loadLocalConfig(options);
      const file = loaded.filepath ?? path.resolve(options.config ?? 'rbee.config.json');
      const specifier = specifierFor(spec, path.dirname(file));
      const plugin = await importAdapter(specifier, {baseDir: path.dirname(file)});
      const existing = await adaptersOf(loaded);
      const clash = existing.adapters.find(other => other.adapter.type === plugin.type || other.adapter.name === plugin.name);
      if (clash !== undefined) {
        throw new RbeeError('invalid_request', `adapter ${plugin.name} (type ${plugin.type}) clashes with ${clash.adapter.name} from ${clash.source}`);
      }
      if (!isEditableConfig(file)) {
        throw new RbeeError('invalid_request', `${plugin.name} is a valid adapter, but ${file} is code: add ${JSON.stringify(specifier)} to its \`adapters\` list`);
      }
      editConfigFile(file, data => {
        const list = Array.isArray(data.adapters) ? data.adapters : [];
        data.adapters = [...list, specifier];
      });
      const result = {name: plugin.name, type: plugin.type, source: specifier, config: file};
      emit(globalOptions(command), result, () => `added ${plugin.name} (worker type "${plugin.type}") to ${file}\nspawn it with: rbee worker spawn --type ${plugin.type} --model …  (restart the hive first)`);
    });

  adapter.command('list')
    .description('built-in adapters and plugins, with where each came from')
    .option('--config <file>', 'config file (default: the one found)')
    .action(async (options: ConfigOption, command: Command) => {
      const {adaptersOf} = await import('../../adapters/configured-adapters.js');
      const loaded = await loadLocalConfig(options);
      const set = await adaptersOf(loaded);
      const result = {
        config: loaded.filepath,
        adapters: set.adapters.map(entry => ({name: entry.adapter.name, type: entry.adapter.type, description: entry.adapter.description ?? null, source: entry.source, built_in: entry.builtIn})),
        errors: set.errors,
      };
      emit(globalOptions(command), result, () => [
        table(['TYPE', 'NAME', 'SOURCE', 'DESCRIPTION'], result.adapters.map(entry => [entry.type, entry.name, entry.source, entry.description ?? ''])),
        ...result.errors.map(error => `not loaded: ${error.source}: ${error.message}`),
      ].join('\n'));
      if (result.errors.length > 0) {
        process.exitCode = 1;
      }
    });

  adapter.command('remove')
    .description('remove a plugin from the config, by what was added, its name or its type')
    .argument('<plugin>', 'package name, path, adapter name or worker type')
    .option('--config <file>', 'config file (default: the one found)')
    .action(async (spec: string, options: ConfigOption, command: Command) => {
      const [{editConfigFile}, {adaptersOf}] = await Promise.all([import('../../config/edit-config.js'), import('../../adapters/configured-adapters.js')]);
      const loaded = await loadLocalConfig(options);
      if (loaded.filepath === null) {
        throw new RbeeError('not_found', 'no config file found: there is nothing to remove');
      }
      const set = await adaptersOf(loaded);
      const byName = set.adapters.find(entry => !entry.builtIn && (entry.adapter.name === spec || entry.adapter.type === spec));
      const specifier = byName?.source ?? specifierFor(spec, path.dirname(loaded.filepath));
      let removed = false;
      editConfigFile(loaded.filepath, data => {
        const list = Array.isArray(data.adapters) ? data.adapters : [];
        const kept = list.filter(entry => (Array.isArray(entry) ? entry[0] : entry) !== specifier);
        removed = kept.length !== list.length;
        data.adapters = kept;
      });
      if (!removed) {
        throw new RbeeError('not_found', `no adapter "${spec}" in ${loaded.filepath}`);
      }
      emit(globalOptions(command), {removed: specifier, config: loaded.filepath}, () => `removed ${specifier} from ${loaded.filepath}`);
    });
  return adapter;
}
