import test from 'ava';
import {createWorkflowWatcher, nodeBar} from '../../src/cli/workflow-progress.js';

const at = '2026-12-05T21:00:00.000Z';

test('a node bar fills with its progress and names the node', t => {
  t.is(nodeBar('3', 'KSampler', 5, 10, 10), 'node 3 (KSampler) [#####.....] 5/10');
  t.is(nodeBar('4', null, 12, 10, 4), 'node 4 [####] 12/10');
  t.is(nodeBar('4', null, 0, 0, 4), 'node 4 [....] 0/0');
});

test('on a log (no TTY) one line per node as it finishes, no carriage returns', t => {
  let written = '';
  const watcher = createWorkflowWatcher({write: chunk => (written += chunk), isTTY: false});
  watcher.event({type: 'queued', workflow_id: 'wf-1', worker_id: 'w1', prompt_id: 'p', queue_position: 0, at});
  watcher.event({type: 'executing', workflow_id: 'wf-1', node: '1', class_type: 'RbeeSteps', at});
  for (let value = 1; value <= 4; value++) {
    watcher.event({type: 'progress', workflow_id: 'wf-1', node: '1', value, max: 4, at});
  }
  watcher.event({type: 'executing', workflow_id: 'wf-1', node: '2', class_type: 'SaveImage', at});
  watcher.event({type: 'executed', workflow_id: 'wf-1', node: '2', outputs: [], at});
  watcher.done();
  t.false(written.includes('\r'));
  t.deepEqual(written.trim().split('\n'), [
    'queued wf-1 on w1 (0 ahead)',
    `node 1 (RbeeSteps) [${'#'.repeat(24)}] 4/4`,
    `node 2 (SaveImage) [${'#'.repeat(24)}] 1/1`,
  ]);
});

test('on a terminal the bar is redrawn in place', t => {
  let written = '';
  const watcher = createWorkflowWatcher({write: chunk => (written += chunk), isTTY: true, columns: 80});
  watcher.event({type: 'executing', workflow_id: 'wf-1', node: '1', class_type: null, at});
  watcher.event({type: 'progress', workflow_id: 'wf-1', node: '1', value: 1, max: 2, at});
  watcher.done();
  t.is(written.split('\r').length - 1, 3, 'drawn at start, at progress and at the end');
  t.true(written.endsWith('2/2\n'));
});
