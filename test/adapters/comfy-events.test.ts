import test from 'ava';
import {modelsNamed, outputFiles, parseComfyMessage, promptRefusal, translate, unknownNodes} from '../../adapters/comfyui/src/comfy-events.js';
import {WorkflowEventSchema} from '../../src/protocol/wire.js';

const workflow = {
  '1': {class_type: 'RbeeSteps', inputs: {steps: 4}},
  '2': {class_type: 'SaveImage', inputs: {images: ['1', 0], filename_prefix: 'rbee'}},
  '3': {class_type: 'CheckpointLoaderSimple', inputs: {ckpt_name: 'sd-v1-5.safetensors'}},
};

function message(type: string, data: unknown) {
  const parsed = parseComfyMessage(JSON.stringify({type, data}));
  if (parsed === null) {
    throw new Error(`${type} did not parse`);
  }
  return parsed;
}

test('executing, progress and executed become rbee events that pass the wire schema', t => {
  const executing = translate(message('executing', {node: '1', prompt_id: 'p1'}), 'wf-1', workflow);
  t.like(executing.event, {type: 'executing', workflow_id: 'wf-1', node: '1', class_type: 'RbeeSteps'});
  t.is(executing.outcome, null);
  const progress = translate(message('progress', {value: 3, max: 4, prompt_id: 'p1', node: '1'}), 'wf-1', workflow);
  t.like(progress.event, {type: 'progress', node: '1', value: 3, max: 4});
  const executed = translate(
    message('executed', {node: '2', prompt_id: 'p1', output: {images: [{filename: 'rbee_00001_.png', subfolder: '', type: 'output'}]}}),
    'wf-1',
    workflow,
  );
  t.like(executed.event, {type: 'executed', node: '2'});
  t.deepEqual(executed.event?.type === 'executed' ? executed.event.outputs : [], [
    {node: '2', filename: 'rbee_00001_.png', subfolder: '', type: 'output', url: '/v1/workflows/wf-1/outputs/output/rbee_00001_.png'},
  ]);
  for (const event of [executing.event, progress.event, executed.event]) {
    t.true(WorkflowEventSchema.safeParse(event).success);
  }
});

test('executing with node null finishes the prompt; errors and interrupts fail it naming the node', t => {
  t.deepEqual(translate(message('executing', {node: null, prompt_id: 'p1'}), 'wf-1', workflow), {event: null, outcome: {kind: 'finished'}});
  const failed = translate(
    message('execution_error', {prompt_id: 'p1', node_id: '1', node_type: 'RbeeSteps', exception_message: 'boom\n', exception_type: 'ValueError'}),
    'wf-1',
    workflow,
  );
  t.is(failed.outcome?.kind, 'failed');
  if (failed.outcome?.kind === 'failed') {
    t.is(failed.outcome.error.message, 'node 1 (RbeeSteps) failed: ValueError: boom');
    t.is(failed.outcome.error.field, '1');
  }
  const interrupted = translate(message('execution_interrupted', {prompt_id: 'p1', node_id: '1', node_type: 'RbeeSteps', executed: []}), 'wf-1', workflow);
  t.regex(interrupted.outcome?.kind === 'failed' ? interrupted.outcome.error.message : '', /interrupted at node 1 \(RbeeSteps\)/);
});

test('a progress with no steps, binary-ish and unknown messages are not followed', t => {
  t.is(translate(message('progress', {value: 0, max: 0}), 'wf-1', workflow).event, null);
  t.is(parseComfyMessage('not json'), null);
  t.is(parseComfyMessage(JSON.stringify({type: 'crystools.monitor', data: {}})), null);
  t.is(parseComfyMessage(JSON.stringify({type: 'progress', data: {value: 'x', max: 2}})), null);
});

test("only a node output's file lists are files; anything else in it is ignored", t => {
  const files = outputFiles('wf-2', '9', {
    images: [{filename: 'a.png', subfolder: 'sub/dir', type: 'temp'}, {filename: '', type: 'output'}, 'junk'],
    text: ['hello'],
    animated: [false],
  });
  t.deepEqual(files, [{node: '9', filename: 'a.png', subfolder: 'sub/dir', type: 'temp', url: '/v1/workflows/wf-2/outputs/temp/sub/dir/a.png'}]);
  t.deepEqual(outputFiles('wf-2', '9', null), []);
});

test("ComfyUI's refusal becomes one invalid_request naming the node and its reason", t => {
  const error = promptRefusal({
    error: {type: 'prompt_outputs_failed_validation', message: 'Prompt outputs failed validation', details: ''},
    node_errors: {
      '5': {
        errors: [{type: 'required_input_missing', message: 'Required input is missing', details: 'image'}],
        dependent_outputs: ['6'],
        class_type: 'ImageInvert',
      },
    },
  });
  t.is(error.code, 'invalid_request');
  t.is(error.field, '5');
  t.is(error.message, 'ComfyUI refused the workflow: node 5 (ImageInvert): Required input is missing: image');
  t.is(promptRefusal({error: {message: 'Prompt has no outputs', details: ''}, node_errors: []}).message, 'ComfyUI refused the workflow: Prompt has no outputs');
  t.is(promptRefusal('nonsense').message, 'ComfyUI refused the workflow without saying why');
});

test('unknown node classes are refused before queueing; loader inputs name the models', t => {
  const error = unknownNodes(workflow, new Set(['RbeeSteps', 'SaveImage']));
  t.is(error?.field, '3');
  t.regex(error?.message ?? '', /node 3 has class_type "CheckpointLoaderSimple"/);
  t.is(unknownNodes(workflow, new Set(['RbeeSteps', 'SaveImage', 'CheckpointLoaderSimple'])), null);
  t.deepEqual(modelsNamed(workflow), ['sd-v1-5.safetensors']);
});
