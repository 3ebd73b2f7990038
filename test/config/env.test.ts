/** Every RBEE_* variable rbee reads is listed in `rbee --help`, flags' fallbacks included. */
import fs from 'node:fs';
import path from 'node:path';
import {fileURLToPath} from 'node:url';
import test from 'ava';
import type {Command} from 'commander';
import {environmentSettings, internalVariables} from '../../src/config/env.js';
import {hiveCommand} from '../../src/cli/commands/hive-command.js';
import {inferCommand} from '../../src/cli/commands/infer-command.js';
import {statusCommand} from '../../src/cli/commands/status-command.js';
import {workerCommand} from '../../src/cli/commands/worker-command.js';

function envVariables(command: Command): string[] {
  const own = command.options.map(option => option.envVar).filter((name): name is string => name !== undefined);
  return [...own, ...command.commands.flatMap(envVariables)];
}

test('the --help environment list names every variable a flag falls back to', t => {
  const used = new Set([hiveCommand(), workerCommand(), inferCommand(), statusCommand()].flatMap(envVariables));
  const listed = new Set(environmentSettings.map(setting => setting.name));
  t.true(used.has('RBEE_DEVICES') && used.has('RBEE_MODEL'), "the walk finds the commands' variables");
  t.deepEqual(
    [...used].filter(name => !listed.has(name as never)),
    [],
  );
});

test('every RBEE_* variable the code reads is listed (or is one the hive sets for its workers)', t => {
  const root = fileURLToPath(new URL('../..', import.meta.url));
  const sources: string[] = [];
  const walk = (dir: string) => {
    for (const entry of fs.readdirSync(dir, {withFileTypes: true})) {
      const file = path.join(dir, entry.name);
      if (entry.isDirectory() && entry.name !== 'node_modules' && entry.name !== 'dist' && entry.name !== 'target') {
        walk(file);
      } else if (/\.(ts|tsx|rs)$/.test(entry.name) && !entry.name.endsWith('.d.ts')) {
        sources.push(file);
      }
    }
  };
  for (const dir of ['src', 'adapters', 'native/src']) {
    walk(path.join(root, dir));
  }
  const read = new Set(sources.flatMap(file => [...fs.readFileSync(file, 'utf8').matchAll(/\bRBEE_[A-Z0-9_]*[A-Z0-9]\b/g)].map(match => match[0])));
  // Tests' own switches (RBEE_TEST_*) are read only by test code paths in the engine's cargo tests.
  const known = new Set<string>([...environmentSettings.map(setting => setting.name), ...internalVariables]);
  t.true(read.size > 10, 'the scan finds the variables');
  t.deepEqual([...read].filter(name => !known.has(name) && !name.startsWith('RBEE_TEST_')).sort(), []);
});
