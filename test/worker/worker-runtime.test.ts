import test from 'ava';
import type {AdapterHeartbeat, RbeeAdapter} from '../../src/adapters/adapter-api.js';
import {WorkerRuntime} from '../../src/worker/worker-runtime.js';
import {testAdapterContext} from '../helpers/adapter-context.js';

const context = testAdapterContext({workerId: 'worker-slow', contextSize: 1_024});

/** An adapter whose heartbeat answers only when the test says so, counting how often it was asked. */
function slowEngine() {
  const pending: Array<{resolve: (figures: AdapterHeartbeat) => void; reject: (error: Error) => void}> = [];
  const adapter: RbeeAdapter = {
    name: 'test:slow',
    type: 'slow',
    start: async () => undefined,
    infer: async () => ({text: '', tokensGenerated: 0, promptTokens: 0, finishReason: 'stop'}),
    heartbeat: () => new Promise<AdapterHeartbeat>((resolve, reject) => pending.push({resolve, reject})),
    stop: async () => undefined,
  };
  return {adapter, pending};
}

function runtimeFor(adapter: RbeeAdapter, engineReportTimeoutMs: number) {
  const runtime = new WorkerRuntime(
    {workerId: 'worker-slow', modelName: 'm', device: 'cpu', parallel: 1, maxQueue: 1, engineReportTimeoutMs},
    adapter,
    context,
  );
  runtime.markReady();
  return runtime;
}

test('an engine slow to report does not hold the heartbeat: it goes with the last figures, and the late report comes next', async t => {
  const {adapter, pending} = slowEngine();
  const runtime = runtimeFor(adapter, 50);
  const first = await runtime.heartbeat();
  t.is(first.status, 'ready');
  t.is(first.loaded_models, undefined, 'no figures yet');
  // Still unanswered: the next heartbeat asks nothing new of the engine.
  await runtime.heartbeat();
  t.is(pending.length, 1, 'one report at a time');
  pending[0]!.resolve({loaded_models: ['m'], queue_depth: 2});
  const second = await runtime.heartbeat();
  t.deepEqual(second.loaded_models, ['m']);
  t.is(second.queue_depth, 2);
  // The next heartbeat asks anew; that report is slow too, and the last figures stand in for it.
  const third = await runtime.heartbeat();
  t.is(pending.length, 2, 'a new report is asked for once the last one is in');
  t.deepEqual(third.loaded_models, ['m']);
});

test('an engine report that fails late fails the worker at the next heartbeat, naming the adapter', async t => {
  const {adapter, pending} = slowEngine();
  const runtime = runtimeFor(adapter, 50);
  t.is((await runtime.heartbeat()).status, 'ready');
  pending[0]!.reject(new Error('engine did not answer /api/ps in 3 s'));
  const failed = await runtime.heartbeat();
  t.is(failed.status, 'error');
  t.is(failed.error, 'adapter test:slow heartbeat failed: engine did not answer /api/ps in 3 s');
  t.is(runtime.failure, failed.error ?? null);
});

test('a report within the limit is used at once', async t => {
  const adapter: RbeeAdapter = {
    name: 'test:quick',
    type: 'quick',
    start: async () => undefined,
    infer: async () => ({text: '', tokensGenerated: 0, promptTokens: 0, finishReason: 'stop'}),
    heartbeat: async () => ({vram_used: 10, vram_total: 20}),
    stop: async () => undefined,
  };
  const beat = await runtimeFor(adapter, 1_000).heartbeat();
  t.like(beat, {vram_used: 10, vram_total: 20});
});
