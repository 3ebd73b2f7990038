import test from 'ava';
import {Router, servedModels} from '../../src/hive/router.js';
import type {StateStore} from '../../src/hive/state-store.js';
import {WorkerTable} from '../../src/hive/worker-table.js';
import type {Supervisor} from '../../src/hive/supervisor.js';
import {createWorkerRecord, type WorkerRecord} from '../../src/hive/worker-record.js';
import {WorkerSpecSchema} from '../../src/protocol/wire.js';

function table(count: number, model = 'gemma'): {supervisor: Supervisor; records: WorkerRecord[]} {
  const records = Array.from({length: count}, (_, index) =>
    createWorkerRecord({
      id: `worker-${index}`,
      spec: WorkerSpecSchema.parse({model, type: 'llamacpp'}),
      modelName: model,
      modelPath: null,
      port: 1000 + index,
      secret: 's',
      state: 'ready',
    }),
  );
  // The router only reads the worker table.
  return {supervisor: {workers: new Map(records.map(record => [record.id, record]))} as unknown as Supervisor, records};
}

test('sequential requests (nothing in flight) spread round-robin over the workers of a model', t => {
  const {supervisor} = table(3);
  const router = new Router(supervisor);
  const picked = Array.from({length: 6}, () => router.pick('gemma').id);
  t.deepEqual(picked, ['worker-0', 'worker-1', 'worker-2', 'worker-0', 'worker-1', 'worker-2']);
});

test('the least busy worker wins; ties among the least busy go round-robin', t => {
  const {supervisor, records} = table(3);
  const router = new Router(supervisor);
  records[0]!.inFlight = 2;
  records[1]!.inFlight = 1;
  records[2]!.inFlight = 1;
  const picked = new Set(Array.from({length: 4}, () => router.pick('gemma').id));
  t.deepEqual([...picked].sort(), ['worker-1', 'worker-2']);
  records[2]!.inFlight = 0;
  t.is(router.pick('gemma').id, 'worker-2');
});

test('pickOther: another worker than those tried, passing over avoided ones while others serve; null when none is left', t => {
  const {supervisor} = table(3);
  const router = new Router(supervisor);
  t.is(router.pickOther('gemma', new Set(['worker-0']), new Set(['worker-1']))?.id, 'worker-2');
  t.is(router.pickOther('gemma', new Set(['worker-0', 'worker-2']), new Set(['worker-1']))?.id, 'worker-1');
  t.is(router.pickOther('gemma', new Set(['worker-0', 'worker-1', 'worker-2'])), null);
  t.is(router.pick('gemma', new Set(['worker-0', 'worker-1'])).id, 'worker-2');
});

test('a multi-model worker is routed every name its heartbeat lists as available, beside its own model; the others are not', t => {
  const workers = new WorkerTable({store: {} as StateStore, onChange: () => undefined});
  const record = createWorkerRecord({
    id: 'worker-ollama',
    spec: WorkerSpecSchema.parse({model: 'default', type: 'ollama'}),
    modelName: 'gemma',
    modelPath: '/m/gemma.gguf',
    port: 1000,
    secret: 's',
    state: 'ready',
  });
  // Adopted: nothing is announced or stored, which is all this test leaves out.
  workers.add(record, 'adopted');
  const supervisor = {workers: new Map([[record.id, workers.get(record.id)!]])} as unknown as Supervisor;
  const router = new Router(supervisor);
  t.throws(() => router.pick('second'), {message: /no worker serves model "second"/});
  workers.heartbeat(record.id, {worker_id: record.id, status: 'ready', loaded_models: ['gemma'], available_models: ['gemma', 'second']}, 's');
  t.is(router.pick('second').id, 'worker-ollama');
  t.is(router.pick('gemma').id, 'worker-ollama');
  t.is(router.pick('/m/gemma.gguf').id, 'worker-ollama', "the spawn's own names stay");
  t.deepEqual(servedModels(supervisor), ['gemma', 'second']);
  t.throws(() => router.pick(undefined), {message: /several models are served \(gemma, second\)/});
  t.throws(() => router.pick('third'), {message: /no worker serves model "third"/});
});
