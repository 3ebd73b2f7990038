/** Every RBEE_* variable a command reads in place of a flag is listed in `rbee --help`. */
import test from 'ava';
import type {Command} from 'commander';
import {environmentSettings} from '../../src/config/env.js';
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
  t.true(used.has('RBEE_DEVICES') && used.has('RBEE_MODEL'), 'the walk finds the commands\' variables');
  t.deepEqual([...used].filter(name => !listed.has(name as never)), []);
});
