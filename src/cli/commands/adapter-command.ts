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

/**
 * Package names stay as they are. Paths are resolved from the config file's folder: one inside it
 * is stored relative (the project moves with it), one elsewhere absolute (the home's config).
 */
function specifierFor(spec: string, configDir: string): string {
  if (!spec.startsWith('.') && !path.isAbsolute(spec)) {
    return spec;
  }
  const relative = path.relative(configDir, path.resolve(spec));
  if (relative.startsWith('..') || path.isAbsolute(relative)) {
    return path.resolve(spec);
  }
  return `./${relative}`;
}

export function adapterCommand(): Command {
  const adapter = new Command('adapter').description('adapters: the plugins that add worker types, each running an engine');

  adapter
    .command('add')
    .description('check that a package or file (.js or .ts) exports an adapter, then record it in the config the hive reads')
    .argument('<plugin>', 'an npm package name (installed) or a path to a module or package folder')
    .option('--config <file>', `config file to record it in (default: the one found from here up, else ${'$'}RBEE_HOME/rbee.config.json)`)
    .action(async (spec: string, options: ConfigOption, command: Command) => {
      const [{importAdapter, resolveAdapterModule}, {editConfigFile, isEditableConfig}, {adaptersOf}, {homeConfigPath}] = await Promise.all([
        import('../../adapters/load-adapters.js'),
        import('../../config/edit-config.js'),
        import('../../adapters/configured-adapters.js'),
        import('../../config/env.js'),
      ]);
      const loaded = await loadLocalConfig(options);
      // Where a hive started from here would read it: the config it finds, else the home's.
      const file = loaded.filepath ?? path.resolve(options.config ?? homeConfigPath());
      const baseDir = path.dirname(file);
      const specifier = specifierFor(spec, baseDir);
      const plugin = await importAdapter(specifier, {baseDir});
      const entries = loaded.config.adapters.filter(
        (entry): entry is string | [string, Record<string, unknown>] => typeof entry === 'string' || Array.isArray(entry),
      );
      const moduleOf = (entry: string) => {
        try {
          return resolveAdapterModule(entry, baseDir);
        } catch {
          return null;
        }
      };
      const target = resolveAdapterModule(specifier, baseDir);
      const already = entries.find(entry => {
        const source = Array.isArray(entry) ? entry[0] : entry;
        return source === specifier || moduleOf(source) === target;
      });
      const result = {name: plugin.name, type: plugin.type, source: specifier, config: file};
      if (already !== undefined) {
        emit(globalOptions(command), {...result, already_added: true}, () => `${plugin.name} (worker type "${plugin.type}") is already added in ${file}`);
        return;
      }
      const existing = await adaptersOf(loaded);
      const clash = existing.adapters.find(other => other.adapter.type === plugin.type || other.adapter.name === plugin.name);
      if (clash !== undefined) {
        throw new RbeeError('invalid_request', `adapter ${plugin.name} (type ${plugin.type}) clashes with ${clash.adapter.name} from ${clash.source}`);
      }
      if (!isEditableConfig(file)) {
        throw new RbeeError(
          'invalid_request',
          `${plugin.name} is a valid adapter, but ${file} is code: add ${JSON.stringify(specifier)} to its \`adapters\` list`,
        );
      }
      editConfigFile(file, data => {
        const list = Array.isArray(data.adapters) ? data.adapters : [];
        data.adapters = [...list, specifier];
      });
      emit(
        globalOptions(command),
        {...result, already_added: false},
        () =>
          `added ${plugin.name} (worker type "${plugin.type}") to ${file}\nspawn it with: rbee worker spawn --type ${plugin.type} --model …  (restart the hive first: it loads adapters when it starts)`,
      );
    });

  adapter
    .command('init')
    .description('scaffold an adapter plugin package (an engine stand-in, and a test that drives it through rbee/testing)')
    .argument('<dir>', 'folder to create (its name becomes the package name)')
    .option('--name <name>', "the adapter's namespaced name (default: local:<folder>)")
    .option('--type <type>', 'the worker type it adds (default: the folder name)')
    .action(async (dir: string, options: {name?: string; type?: string}, command: Command) => {
      const [{scaffoldAdapter}, {rbeeVersion}] = await Promise.all([import('./adapter-scaffold.js'), import('../../version.js')]);
      const folder = path.resolve(dir);
      const base =
        path
          .basename(folder)
          .toLowerCase()
          .replace(/[^a-z0-9._-]+/g, '-')
          .replace(/^[^a-z0-9]+/, '') || 'engine';
      const type = options.type ?? base.replace(/^rbee-adapter-/, '');
      const name = options.name ?? `local:${type}`;
      // The same rules the hive applies when it loads the adapter, so the scaffold loads as written.
      if (!/^[a-z0-9@][a-z0-9._/-]*:[a-z0-9][a-z0-9._-]*$/.test(name)) {
        throw new RbeeError('invalid_request', `--name: "${name}" is not a namespaced name like "vendor:engine"`);
      }
      if (!/^[a-z0-9][a-z0-9._-]{0,63}$/.test(type)) {
        throw new RbeeError('invalid_request', `--type: "${type}" must be lowercase letters, digits, ".", "_" or "-"`);
      }
      const written = scaffoldAdapter({dir: folder, name, type, rbeeVersion});
      emit(globalOptions(command), {dir: folder, name, type, files: written}, () =>
        [
          `created ${name} (worker type "${type}") in ${folder}:`,
          ...written.map(file => `  ${path.relative(folder, file)}`),
          `next: cd ${dir} && npm install && npm test, then rbee adapter add ${dir}`,
        ].join('\n'),
      );
    });

  adapter
    .command('list')
    .description('built-in adapters and plugins: the worker type each adds, the devices its engine runs on here, where it came from')
    .option('--config <file>', 'config file (default: the one found)')
    .action(async (options: ConfigOption, command: Command) => {
      const [{adaptersOf}, {adapterBackends}] = await Promise.all([
        import('../../adapters/configured-adapters.js'),
        import('../../adapters/adapter-backends.js'),
      ]);
      const loaded = await loadLocalConfig(options);
      const set = await adaptersOf(loaded);
      const result = {
        config: loaded.filepath,
        adapters: await Promise.all(
          set.adapters.map(async entry => ({
            name: entry.adapter.name,
            type: entry.adapter.type,
            description: entry.adapter.description ?? null,
            source: entry.source,
            built_in: entry.builtIn,
            // Where its engine runs on this machine, as the hive will judge a spawn.
            backends: await adapterBackends(entry.adapter),
            groups: entry.adapter.groups === true,
          })),
        ),
        errors: set.errors,
      };
      const runsOn = (backends: (typeof result.adapters)[number]['backends']) =>
        Object.entries(backends)
          .map(([backend, support]) => (support?.unavailable === undefined ? backend : `${backend} (not here)`))
          .join(', ');
      emit(globalOptions(command), result, () =>
        [
          table(
            ['TYPE', 'NAME', 'RUNS ON', 'SOURCE', 'DESCRIPTION'],
            result.adapters.map(entry => [entry.type, entry.name, runsOn(entry.backends), entry.source, entry.description ?? '']),
          ),
          ...result.errors.map(error => `not loaded: ${error.source}: ${error.message}`),
        ].join('\n'),
      );
      if (result.errors.length > 0) {
        process.exitCode = 1;
      }
    });

  adapter
    .command('remove')
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
