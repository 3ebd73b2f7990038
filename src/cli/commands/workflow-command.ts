import fs from 'node:fs';
import path from 'node:path';
import {Command} from 'commander';
import {RbeeError} from '../../errors.js';
import {parseWire} from '../../protocol/parse.js';
import {WorkflowGraphSchema, type WorkflowEvent, type WorkflowOutputFile} from '../../protocol/wire.js';
import {globalOptions, hiveClient} from '../context.js';
import {emit} from '../output.js';
import {createWorkflowWatcher} from '../workflow-progress.js';

type RunOptions = {watch?: boolean; out?: string; worker?: string};

/** The workflow file: ComfyUI's API format ("Save (API Format)"), checked before anything is sent. */
function readWorkflow(file: string) {
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (error) {
    throw new RbeeError('not_found', `cannot read workflow ${file}: ${(error as Error).message}`, {cause: error});
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (error) {
    throw new RbeeError('invalid_request', `workflow ${file} is not JSON: ${(error as Error).message}`, {cause: error});
  }
  const parsed = parseWire(WorkflowGraphSchema, json, `workflow ${file} (ComfyUI's API format: node ids to {class_type, inputs})`);
  if (!parsed.ok) {
    throw new RbeeError('invalid_request', parsed.message, {field: parsed.issues[0]?.field});
  }
  return parsed.value;
}

export function workflowCommand(): Command {
  const workflow = new Command('workflow').description('workflows on workflow workers (ComfyUI)');
  workflow
    .command('run')
    .description('run a workflow (ComfyUI API format) through the hive; --json prints its events as NDJSON')
    .argument('<file>', 'the workflow, as ComfyUI saves it with "Save (API Format)"')
    .option('--watch', 'show a progress bar per node as it runs')
    .option('--out <dir>', 'save the files it writes into this folder')
    .option('--worker <id>', 'run it on this worker (default: the least busy ready workflow worker)')
    .action(async (file: string, options: RunOptions, command: Command) => {
      const global = globalOptions(command);
      const graph = readWorkflow(file);
      const client = hiveClient(command, 600_000);
      const ndjson = (value: unknown) => process.stdout.write(`${JSON.stringify(value)}\n`);
      const watcher = options.watch === true && global.json !== true ? createWorkflowWatcher(process.stderr) : null;
      // Ctrl-C closes the stream, and the hive cancels the workflow in the engine when its client goes.
      const controller = new AbortController();
      const interrupt = () => controller.abort();
      process.once('SIGINT', interrupt);
      let final: WorkflowEvent | null = null;
      try {
        for await (const event of client.runWorkflow(
          {workflow: graph, ...(options.worker === undefined ? {} : {worker_id: options.worker})},
          {signal: controller.signal},
        )) {
          if (global.json === true) {
            ndjson(event);
          }
          watcher?.event(event);
          if (event.type === 'done' || event.type === 'error') {
            final = event;
          }
        }
      } finally {
        watcher?.done();
        process.removeListener('SIGINT', interrupt);
      }
      if (final?.type === 'error') {
        throw new RbeeError(final.error.code === 'invalid_request' ? 'invalid_request' : 'engine_error', `workflow failed: ${final.error.message}`, {
          ...(final.error.node === undefined ? {} : {field: final.error.node}),
        });
      }
      if (final?.type !== 'done') {
        throw new RbeeError('upstream_error', 'the workflow stream ended without a final event');
      }
      const saved: Array<{file: WorkflowOutputFile; path: string}> = [];
      if (options.out !== undefined) {
        fs.mkdirSync(options.out, {recursive: true});
        for (const output of final.outputs) {
          const {bytes} = await client.workflowOutput(final.workflow_id, output);
          // The engine's name for it, never a path: only its last segment is used.
          const target = path.join(options.out, path.basename(output.filename));
          fs.writeFileSync(target, bytes);
          saved.push({file: output, path: target});
          if (global.json === true) {
            ndjson({type: 'saved', workflow_id: final.workflow_id, filename: output.filename, path: target, bytes: bytes.length});
          }
        }
      }
      if (global.json !== true) {
        const done = final;
        emit(global, done, () =>
          [
            `${done.workflow_id}: done in ${(done.duration_ms / 1000).toFixed(2)} s, ${done.outputs.length} file(s)`,
            ...done.outputs.map(output => `  ${saved.find(entry => entry.file === output)?.path ?? output.url}`),
          ].join('\n'),
        );
      }
    });
  workflow
    .command('cancel')
    .description('interrupt a running workflow, or take a waiting one off the queue')
    .argument('<workflow-id>', 'its id, from `rbee workflow run` (wf-…)')
    .action(async (id: string, _options: unknown, command: Command) => {
      const answer = await hiveClient(command).cancelWorkflow(id);
      emit(globalOptions(command), answer, () => `${answer.workflow_id}: ${answer.result}`);
    });
  return workflow;
}
