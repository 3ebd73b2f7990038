/** The dashboard's reducer: hive events in, the model out. */
import test from 'ava';
import type {HiveEvent} from '../../src/protocol/wire.js';
import {countByState, heartbeatAge, initialModel, isStale, reduceModel, staleAfterMs, throughputHistory, type HiveModel} from '../../src/tui/model.js';
import {heartbeatEvent, hiveStatus, iso, snapshot, t0, workerInfo} from './helpers/fake-hive.js';

const apply = (model: HiveModel, events: HiveEvent[], now = t0) => reduceModel(model, {type: 'events', events, now});

test('a snapshot gives every worker a row; workers already ended are history', t => {
  const model = apply(initialModel('http://hive', t0), [
    snapshot([workerInfo({worker_id: 'w-a', state: 'ready'}), workerInfo({worker_id: 'w-b', state: 'stopped'})]),
  ]);
  t.deepEqual([...model.workers.keys()], ['w-a', 'w-b']);
  t.false(model.workers.get('w-a')!.history);
  t.true(model.workers.get('w-b')!.history);
  t.is(model.hive?.pid, 100);
  t.is(model.events, 1);
});

test('heartbeats update the last heartbeat, collect throughput and observe the interval', t => {
  let model = apply(initialModel('http://hive', t0), [snapshot([workerInfo({worker_id: 'w-a'})])]);
  model = apply(
    model,
    [
      heartbeatEvent({worker_id: 'w-a', throughput_tokens_per_second: 10, requests_total: 1}, t0 + 1_000),
      heartbeatEvent({worker_id: 'w-a', throughput_tokens_per_second: 20, requests_total: 2}, t0 + 2_000),
    ],
    t0 + 2_000,
  );
  let row = model.workers.get('w-a')!;
  t.deepEqual(row.throughput, [10, 20]);
  t.is(row.info.last_heartbeat?.requests_total, 2);
  t.is(row.info.last_heartbeat_at, iso(t0 + 2_000));
  t.is(row.intervalMs, 1_000);
  t.is(staleAfterMs(row), 3_000, '3 × the observed interval');
  // Smoothed: one slow interval moves it part of the way.
  model = apply(model, [heartbeatEvent({worker_id: 'w-a', throughput_tokens_per_second: 5}, t0 + 4_000)], t0 + 4_000);
  row = model.workers.get('w-a')!;
  t.is(row.intervalMs, 1_300);
  t.is(model.now, t0 + 4_000);
});

test('the throughput history is capped', t => {
  let model = apply(initialModel('http://hive', t0), [snapshot([workerInfo({worker_id: 'w-a'})])]);
  const events = Array.from({length: throughputHistory + 10}, (_, index) =>
    heartbeatEvent({worker_id: 'w-a', throughput_tokens_per_second: index}, t0 + index * 1_000),
  );
  model = apply(model, events);
  const row = model.workers.get('w-a')!;
  t.is(row.throughput.length, throughputHistory);
  t.is(row.throughput.at(-1), throughputHistory + 9);
});

test('staleness: beyond 3 × 5 s without an observed interval, 3 × the interval once seen; never for ended workers', t => {
  let model = apply(initialModel('http://hive', t0), [
    snapshot([workerInfo({worker_id: 'w-a', last_heartbeat_at: iso(t0)}), workerInfo({worker_id: 'w-gone', state: 'failed', last_heartbeat_at: iso(t0)})]),
  ]);
  const row = model.workers.get('w-a')!;
  t.is(heartbeatAge(row, t0 + 14_000), 14_000);
  t.false(isStale(row, t0 + 15_000));
  t.true(isStale(row, t0 + 15_001));
  t.false(isStale(model.workers.get('w-gone')!, t0 + 60_000));
  model = reduceModel(model, {type: 'tick', now: t0 + 16_000});
  t.is(countByState(model).stale, 1);
  t.deepEqual(countByState(model).states, {ready: 1, failed: 1});
  const never = apply(initialModel('http://hive', t0), [snapshot([workerInfo({worker_id: 'w-new', state: 'starting'})])]);
  t.false(isStale(never.workers.get('w-new')!, t0 + 60_000), 'no heartbeat yet is not stale');
});

test('worker events add and replace records; heartbeats of unknown workers are ignored', t => {
  let model = apply(initialModel('http://hive', t0), [snapshot([])]);
  model = apply(model, [
    {type: 'worker', at: iso(t0), change: 'spawned', worker: workerInfo({worker_id: 'w-a', state: 'starting'})},
    heartbeatEvent({worker_id: 'w-unknown'}, t0),
    {type: 'worker', at: iso(t0 + 1), change: 'state', worker: workerInfo({worker_id: 'w-a', state: 'stopped'})},
  ]);
  t.deepEqual([...model.workers.keys()], ['w-a']);
  t.is(model.workers.get('w-a')!.info.state, 'stopped');
  t.false(model.workers.get('w-a')!.history, 'seen ending: it stays visible');
});

test('a new snapshot after a reconnect keeps histories and what was seen alive', t => {
  let model = apply(initialModel('http://hive', t0), [snapshot([workerInfo({worker_id: 'w-a'})])]);
  model = apply(model, [
    heartbeatEvent({worker_id: 'w-a', throughput_tokens_per_second: 7}, t0 + 1_000),
    heartbeatEvent({worker_id: 'w-a', throughput_tokens_per_second: 8}, t0 + 2_000),
  ]);
  model = reduceModel(model, {type: 'connection', connection: {phase: 'reconnecting', since: t0 + 3_000, attempt: 1, retryAt: t0 + 3_250, error: 'gone'}});
  t.is(model.workers.size, 1, 'the last known state stays while reconnecting');
  const last = model.workers.get('w-a')!.info;
  model = apply(model, [snapshot([{...last, state: 'stopped'}, workerInfo({worker_id: 'w-b'})])], t0 + 4_000);
  const row = model.workers.get('w-a')!;
  t.deepEqual(row.throughput, [7, 8], 'the same heartbeat again adds no sample');
  t.is(row.intervalMs, 1_000);
  t.false(row.history);
  t.is(model.workers.get('w-b')!.info.state, 'ready');
});

test('status gives the devices; one copy of the map per batch leaves the old model untouched', t => {
  const before = apply(initialModel('http://hive', t0), [snapshot([workerInfo({worker_id: 'w-a'})])]);
  const after = apply(before, [heartbeatEvent({worker_id: 'w-a', throughput_tokens_per_second: 1}, t0 + 1)]);
  t.not(before.workers, after.workers);
  t.is(before.workers.get('w-a')!.throughput.length, 0);
  const withDevices = reduceModel(after, {type: 'status', status: hiveStatus, now: t0});
  t.is(withDevices.devices[0]?.id, 'cpu');
  t.is(reduceModel(withDevices, {type: 'rejected', count: 2}).rejected, 2);
});
