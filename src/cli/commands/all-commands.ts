import type {Command} from 'commander';
import {adapterCommand} from './adapter-command.js';
import {completionCommand} from './completion-command.js';
import {dashboardCommand} from './dashboard-command.js';
import {enginesCommand} from './engines-command.js';
import {hiveCommand} from './hive-command.js';
import {inferCommand} from './infer-command.js';
import {modelCommand} from './model-command.js';
import {modelsCommand} from './models-command.js';
import {statusCommand} from './status-command.js';
import {workerCommand} from './worker-command.js';
import {workflowCommand} from './workflow-command.js';

/** Every command of the CLI, in the order `rbee --help` lists them. */
export function allCommands(program: () => Command): Command[] {
  return [
    hiveCommand(),
    workerCommand(),
    inferCommand(),
    workflowCommand(),
    statusCommand(),
    dashboardCommand(),
    modelCommand(),
    modelsCommand(),
    enginesCommand(),
    adapterCommand(),
    completionCommand(program),
  ];
}
