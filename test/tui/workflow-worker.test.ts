/** A workflow worker (ComfyUI) in the dashboard: a progress bar in its row, the current node in the detail pane. */
import test from 'ava';
import {layoutColumns, lineCells} from '../../src/tui/columns.js';
import {describeWorker} from '../../src/tui/describe-worker.js';
import {initialModel, reduceModel} from '../../src/tui/model.js';
import {tableLines} from '../../src/tui/rows.js';
import {heartbeatEvent, snapshot, t0, workerInfo} from './helpers/fake-hive.js';

function modelWith(heartbeat: Record<string, unknown>) {
  const model = reduceModel(initialModel('http://hive', t0), {type: 'events', events: [snapshot([workerInfo({worker_id: 'w-c', type: 'comfyui'})])], now: t0});
  return reduceModel(model, {type: 'events', now: t0 + 1_000, events: [heartbeatEvent({worker_id: 'w-c', adapter_type: 'comfyui', ...heartbeat}, t0 + 1_000)]});
}

function workflowCell(model: ReturnType<typeof modelWith>) {
  const columns = layoutColumns(200, {workflow: true});
  const line = tableLines(model.workers.values(), {filter: '', showHistory: false})[0]!;
  const cells = lineCells(line, columns, {now: t0 + 1_500, devices: new Map()});
  return cells[columns.findIndex(column => column.key === 'workflow')]!;
}

test('running: the row shows the progress bar and the node; the detail pane names the workflow and the node', t => {
  const model = modelWith({
    current_workflow: 'wf-7',
    workflow_progress: {prompt_id: 'p-1', current_node: '3 (KSampler)', progress: 0.25},
    queue_depth: 2,
  });
  const cell = workflowCell(model);
  t.regex(cell.text, /^█+░+ +25% 3 \(KSampler\)/);
  t.is(cell.color, 'blue');
  const lines = describeWorker(model.workers.get('w-c')!, {now: t0 + 1_500, deviceMemory: undefined, group: undefined, restartedFrom: undefined});
  t.true(lines.includes('Workflow wf-7: 25% of the current node done, now at node 3 (KSampler).'), lines.join('\n'));
});

test('idle: the row says so, and the detail pane says what waits', t => {
  const model = modelWith({current_workflow: null, workflow_progress: null, queue_depth: 1});
  const cell = workflowCell(model);
  t.is(cell.text.trim(), 'idle');
  t.is(cell.color, 'gray');
  const lines = describeWorker(model.workers.get('w-c')!, {now: t0 + 1_500, deviceMemory: undefined, group: undefined, restartedFrom: undefined});
  t.true(lines.includes('No workflow running; 1 queued.'), lines.join('\n'));
});

test('a worker that runs no workflows shows a dash and no workflow sentence', t => {
  const model = modelWith({});
  t.is(workflowCell(model).text.trim(), '-');
  const lines = describeWorker(model.workers.get('w-c')!, {now: t0 + 1_500, deviceMemory: undefined, group: undefined, restartedFrom: undefined});
  t.false(lines.some(line => line.includes('orkflow')));
});
