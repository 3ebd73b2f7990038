/** Request events in the dashboard's model: busy at once, live rates, totals per device, sort keys and restart links. */
import test from 'ava';
import type {HiveEvent} from '../../src/protocol/wire.js';
import {describeWorker, throughputChart} from '../../src/tui/describe-worker.js';
import {hiveTotals, initialModel, rateWindowMs, reduceModel, shownState, workerRates, type HiveModel} from '../../src/tui/model.js';
import {selectableIds, tableLines} from '../../src/tui/rows.js';
import {heartbeatEvent, iso, snapshot, t0, workerInfo} from './helpers/fake-hive.js';

function apply(model: HiveModel, events: HiveEvent[], now: number): HiveModel {
  return reduceModel(model, {type: 'events', events, now});
}

const request = (worker: string, phase: 'started' | 'progress' | 'ended', at: number, inFlight: number, tokens?: number): HiveEvent => ({
  type: 'request',
  at: iso(at),
  worker_id: worker,
  phase,
  in_flight: inFlight,
  ...(tokens === undefined ? {} : {tokens}),
});

test("a request event makes a ready worker busy before the hive's record says so, and ready again when it ends", t => {
  const state = (at: number, value: 'ready' | 'busy'): HiveEvent => ({
    type: 'worker',
    at: iso(at),
    change: 'state',
    worker: workerInfo({worker_id: 'w1', state: value}),
  });
  let model = apply(initialModel('http://hive', t0), [snapshot([workerInfo({worker_id: 'w1'})]), heartbeatEvent({worker_id: 'w1', status: 'ready'}, t0)], t0);
  t.is(shownState(model.workers.get('w1')!), 'ready');
  model = apply(model, [request('w1', 'started', t0 + 100, 1)], t0 + 100);
  t.is(shownState(model.workers.get('w1')!), 'busy');
  // The record turned busy from a heartbeat; the request that ended after it makes the worker ready at once.
  model = apply(model, [state(t0 + 200, 'busy'), request('w1', 'ended', t0 + 300, 0, 40)], t0 + 300);
  t.is(shownState(model.workers.get('w1')!), 'ready');
  // A later record is the truth again (requests may reach the worker without the hive).
  model = apply(model, [state(t0 + 400, 'busy')], t0 + 400);
  t.is(shownState(model.workers.get('w1')!), 'busy');
});

test('tok/s and req/s come from the request events of the last window, else from the heartbeat', t => {
  let model = apply(
    initialModel('http://hive', t0),
    [snapshot([workerInfo({worker_id: 'w1'})]), heartbeatEvent({worker_id: 'w1', throughput_tokens_per_second: 3}, t0)],
    t0,
  );
  t.deepEqual(workerRates(model.workers.get('w1')!, t0), {tokensPerSecond: 3, requestsPerSecond: 0, source: 'heartbeat'});
  model = apply(
    model,
    [
      request('w1', 'started', t0 + 10, 1),
      request('w1', 'progress', t0 + 1_010, 1, 50),
      request('w1', 'ended', t0 + 1_500, 0, 25),
      request('w1', 'started', t0 + 1_600, 1),
      request('w1', 'ended', t0 + 2_000, 0, 25),
    ],
    t0 + 2_000,
  );
  const rates = workerRates(model.workers.get('w1')!, t0 + 2_000);
  t.is(rates.source, 'requests');
  t.is(rates.tokensPerSecond, 100 / (rateWindowMs / 1_000));
  t.is(rates.requestsPerSecond, 2 / (rateWindowMs / 1_000));
  // Once the window has passed with nothing in flight, the heartbeat's figure is shown again.
  t.is(workerRates(model.workers.get('w1')!, t0 + 2_000 + rateWindowMs).source, 'heartbeat');
});

test('totals: live workers, busy, rates, and memory held per device (RAM for cpu workers, VRAM for GPU ones)', t => {
  const model = apply(
    initialModel('http://hive', t0),
    [
      snapshot([
        workerInfo({worker_id: 'c1', device: 'cpu'}),
        workerInfo({worker_id: 'c2', device: 'cpu'}),
        workerInfo({worker_id: 'g1', device: 'cuda:0'}),
        workerInfo({worker_id: 'dead', device: 'cpu', state: 'failed'}),
      ]),
      heartbeatEvent({worker_id: 'c1', ram_used: 100, throughput_tokens_per_second: 4}, t0),
      heartbeatEvent({worker_id: 'c2', ram_used: 200}, t0),
      heartbeatEvent({worker_id: 'g1', ram_used: 5, vram_used: 1_000, throughput_tokens_per_second: 6}, t0),
      request('g1', 'started', t0 + 1, 1),
    ],
    t0 + 1,
  );
  const totals = hiveTotals(model);
  t.is(totals.workers, 3);
  t.is(totals.busy, 1);
  t.is(totals.tokensPerSecond, 4);
  t.deepEqual(
    [...totals.memory],
    [
      ['cpu', {bytes: 300, workers: 2}],
      ['cuda:0', {bytes: 1_000, workers: 1}],
    ],
  );
});

test('sort keys order live workers by id, type, tok/s, memory or CPU; a restarted worker takes the row of the one it replaced', t => {
  const model = apply(
    initialModel('http://hive', t0),
    [
      snapshot([
        workerInfo({worker_id: 'w-b', type: 'vllm', started_at: iso(t0 - 3_000)}),
        workerInfo({worker_id: 'w-a', type: 'tensorrt-llm', started_at: iso(t0 - 2_000)}),
        workerInfo({worker_id: 'w-c', type: 'llamacpp', started_at: iso(t0 - 1_000)}),
      ]),
      heartbeatEvent({worker_id: 'w-a', throughput_tokens_per_second: 1, ram_used: 30, cpu_percent: 10}, t0),
      heartbeatEvent({worker_id: 'w-b', throughput_tokens_per_second: 9, ram_used: 10, cpu_percent: 300}, t0),
      heartbeatEvent({worker_id: 'w-c', throughput_tokens_per_second: 5, ram_used: 20, cpu_percent: 50}, t0),
    ],
    t0,
  );
  const ids = (options: Parameters<typeof tableLines>[1]) => selectableIds(tableLines(model.workers.values(), options));
  const base = {filter: '', showHistory: false, now: t0};
  t.deepEqual(ids({...base, sort: 'started'}), ['w-b', 'w-a', 'w-c']);
  t.deepEqual(ids({...base, sort: 'id'}), ['w-a', 'w-b', 'w-c']);
  t.deepEqual(ids({...base, sort: 'type'}), ['w-c', 'w-a', 'w-b']);
  t.deepEqual(ids({...base, sort: 'tok/s'}), ['w-b', 'w-c', 'w-a']);
  t.deepEqual(ids({...base, sort: 'memory'}), ['w-a', 'w-c', 'w-b']);
  t.deepEqual(ids({...base, sort: 'cpu'}), ['w-b', 'w-c', 'w-a']);

  const restarted = apply(
    model,
    [{type: 'worker', at: iso(t0), change: 'spawned', worker: workerInfo({worker_id: 'w-new', state: 'starting', started_at: iso(t0 + 1)})}],
    t0,
  );
  const lines = tableLines(restarted.workers.values(), {...base, links: new Map([['w-new', 'w-b']])});
  t.deepEqual(selectableIds(lines), ['w-new', 'w-a', 'w-c'], "in w-b's place, and w-b is not shown");
  t.is(lines[0]?.kind === 'worker' ? lines[0].branch : null, '↻ ');
});

test('the detail sentences say what the worker does, in words', t => {
  const model = apply(
    initialModel('http://hive', t0),
    [
      snapshot([workerInfo({worker_id: 'w1', type: 'vllm', device: 'cuda:0', model: 'qwen', context_size: 4096, parallel: 8, threads: null, restarts: 2})]),
      heartbeatEvent(
        {
          worker_id: 'w1',
          adapter_type: 'vllm',
          vram_used: 2 * 1024 ** 3,
          vram_total: 8 * 1024 ** 3,
          cpu_percent: 112.4,
          requests_total: 3,
          tokens_generated: 90,
          uptime_seconds: 75,
          loaded_models: ['qwen', 'llama'],
          vram_allocations: {qwen: 1024 ** 3},
        },
        t0,
      ),
      request('w1', 'started', t0 + 5, 2),
    ],
    t0 + 5,
  );
  const lines = describeWorker(model.workers.get('w1')!, {now: t0 + 5, deviceMemory: undefined, group: undefined, restartedFrom: 'w0'});
  t.deepEqual(lines, [
    'Serves qwen with vllm on cuda:0 (context 4096 tokens, 8 at once, 1 thread).',
    'Busy: 2 requests in flight through the hive.',
    "Throughput: 0 tokens/s now (the hive's requests of the last 5 s) · 90 tokens in 3 requests since it started.",
    'Memory: 2.0G VRAM of 8.0G on cuda:0 (25%) · CPU 112% of one core.',
    'Models loaded: qwen (1.0G), llama.',
    'Up 1m15s · 2 restarts (policy on-failure) · restarted by this dashboard from w0.',
  ]);
});

test('the throughput chart is as tall as asked, newest on the right, the peak a full column', t => {
  const chart = throughputChart([0, 5, 10], 2, 80);
  t.deepEqual(chart, ['    ██', '  ████']);
  t.deepEqual(throughputChart([], 3, 80), []);
  t.is(
    throughputChart(
      Array.from({length: 32}, (_, index) => index),
      4,
      40,
    )[0]!.length,
    32,
    'one character a sample when two do not fit',
  );
});
