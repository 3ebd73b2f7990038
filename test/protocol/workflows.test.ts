import test from 'ava';
import fc from 'fast-check';
import {WorkflowEventSchema, WorkflowRequestSchema, outputUrl, parseOutputPath} from '../../src/protocol/wire.js';

test('a workflow request is a non-empty graph of {class_type, inputs}; a bad one names the field', t => {
  t.true(WorkflowRequestSchema.safeParse({workflow: {'1': {class_type: 'EmptyImage', inputs: {width: 8}}}}).success);
  t.true(WorkflowRequestSchema.safeParse({workflow: {'1': {class_type: 'X', inputs: {}, _meta: {title: 'kept'}}}, worker_id: 'worker-1'}).success);
  t.false(WorkflowRequestSchema.safeParse({workflow: {}}).success);
  const noClass = WorkflowRequestSchema.safeParse({workflow: {'1': {inputs: {}}}});
  t.false(noClass.success);
  t.deepEqual(noClass.error?.issues[0]?.path, ['workflow', '1', 'class_type']);
  t.false(WorkflowRequestSchema.safeParse({workflow: {'1': {class_type: 'X', inputs: {}}}, worker_id: '../x'}).success);
  t.false(WorkflowRequestSchema.safeParse({workflow: {'1': {class_type: 'X', inputs: {}}}, extra: 1}).success, 'strict: a misspelt field fails');
});

test('workflow events: progress needs a positive max; done and error as the stream ends them', t => {
  const at = '2026-12-05T21:00:00.000Z';
  t.true(WorkflowEventSchema.safeParse({type: 'progress', workflow_id: 'wf-1', node: '3', value: 2, max: 20, at}).success);
  t.false(WorkflowEventSchema.safeParse({type: 'progress', workflow_id: 'wf-1', node: '3', value: 2, max: 0, at}).success);
  t.true(WorkflowEventSchema.safeParse({type: 'done', workflow_id: 'wf-1', outputs: [], duration_ms: 5, at}).success);
  t.true(WorkflowEventSchema.safeParse({type: 'error', workflow_id: 'wf-1', error: {code: 'engine_error', message: 'x', node: '3'}}).success);
  t.false(WorkflowEventSchema.safeParse({type: 'finished', workflow_id: 'wf-1'}).success);
});

test('output paths: plain names under output/ or temp/ only', t => {
  t.deepEqual(parseOutputPath('output/rbee_00001_.png'), {type: 'output', subfolder: '', filename: 'rbee_00001_.png'});
  t.deepEqual(parseOutputPath('temp/a/b/c.png'), {type: 'temp', subfolder: 'a/b', filename: 'c.png'});
  for (const bad of [
    'output',
    'output/',
    'output/../x.png',
    'output/./x.png',
    'output//x.png',
    'input/x.png',
    '../output/x.png',
    'output/a\\b.png',
    'output/x\0.png',
    '/output/x.png',
  ]) {
    t.is(parseOutputPath(bad), null, bad);
  }
});

test('outputUrl and parseOutputPath agree; no path they accept climbs out', t => {
  const segment = fc.string({minLength: 1, maxLength: 12}).filter(value => !value.includes('/'));
  fc.assert(
    fc.property(fc.constantFrom('output', 'temp'), fc.array(segment, {maxLength: 3}), segment, (type, folders, filename) => {
      const parsed = parseOutputPath([type, ...folders, filename].join('/'));
      if (parsed === null) {
        return;
      }
      const parts = [parsed.type, ...parsed.subfolder.split('/').filter(Boolean), parsed.filename];
      // Nothing that a file system reads as "up" or "here" survives the parse.
      t.false(parts.some(part => part === '..' || part === '.' || part === '' || part.includes('\\') || part.includes('\0')));
      const url = outputUrl('wf-1', parsed);
      const back = parseOutputPath(url.slice('/v1/workflows/wf-1/outputs/'.length).split('/').map(decodeURIComponent).join('/'));
      t.deepEqual(back, parsed);
    }),
  );
});
