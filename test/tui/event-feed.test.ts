/** The event feed: validation, batching, and reconnecting with backoff. */
import test from 'ava';
import type {HiveEvent} from '../../src/protocol/wire.js';
import {backoffDelay, parseHiveEvent, startEventFeed} from '../../src/tui/event-feed.js';
import type {ConnectionState} from '../../src/tui/model.js';
import {waitFor} from '../helpers/process-tree.js';
import {fakeHive, heartbeatEvent, t0, workerInfo} from './helpers/fake-hive.js';

test('backoff doubles from the initial delay up to the cap, with jitter', t => {
  const backoff = {initialMs: 250, maxMs: 5_000};
  t.is(
    backoffDelay(1, backoff, () => 0.5),
    250,
  );
  t.is(
    backoffDelay(3, backoff, () => 0.5),
    1_000,
  );
  t.is(
    backoffDelay(10, backoff, () => 0.5),
    5_000,
  );
  t.is(
    backoffDelay(1, backoff, () => 0),
    200,
  );
  t.is(
    backoffDelay(1, backoff, () => 1),
    300,
  );
});

test('heartbeats arrive in batches, state changes at once, bad events are counted and dropped', async t => {
  const hive = fakeHive([workerInfo({worker_id: 'w-a'})]);
  const batches: HiveEvent[][] = [];
  let rejected = 0;
  const feed = startEventFeed({
    api: hive,
    flushMs: 80,
    onEvents: events => batches.push(events),
    onConnection: () => undefined,
    onRejected: count => {
      rejected += count;
    },
  });
  try {
    await waitFor(() => batches.length === 1, 2_000, 'the snapshot');
    t.is(batches[0]![0]!.type, 'snapshot');
    for (let index = 0; index < 20; index++) {
      hive.emit(heartbeatEvent({worker_id: 'w-a', requests_total: index}, t0 + index));
    }
    hive.emit({type: 'heartbeat'} as unknown as HiveEvent);
    await waitFor(() => batches.length === 2, 2_000, 'one batch of heartbeats');
    t.is(batches[1]!.length, 20);
    t.is(rejected, 1);
  } finally {
    feed.stop();
  }
});

test('a closed stream and a refused connection are retried with backoff until the hive is back', async t => {
  const hive = fakeHive([workerInfo({worker_id: 'w-a'})]);
  const states: ConnectionState[] = [];
  const feed = startEventFeed({
    api: hive,
    flushMs: 10,
    backoff: {initialMs: 20, maxMs: 40},
    onEvents: () => undefined,
    onConnection: state => states.push(state),
  });
  try {
    await waitFor(() => states.at(-1)?.phase === 'live', 2_000, 'live');
    hive.refuse = 'no hive at http://127.0.0.1:7833';
    hive.end();
    await waitFor(() => states.filter(state => state.phase === 'reconnecting').length >= 3, 2_000, 'three failed attempts');
    const attempts = states.flatMap(state => (state.phase === 'reconnecting' ? [state.attempt] : []));
    t.deepEqual(attempts.slice(0, 3), [1, 2, 3]);
    const last = states.at(-1);
    t.is(last?.phase === 'reconnecting' ? last.error : null, 'no hive at http://127.0.0.1:7833');
    hive.refuse = null;
    await waitFor(() => states.at(-1)?.phase === 'live', 2_000, 'live again');
    t.is(hive.connections, 2);
  } finally {
    feed.stop();
  }
});

test('every event is held to the wire schema, heartbeats included', t => {
  const good = heartbeatEvent({worker_id: 'w-a', throughput_tokens_per_second: 3}, t0);
  t.deepEqual(parseHiveEvent(JSON.stringify(good)), good);
  const bad = (heartbeat: Record<string, unknown>, event: Record<string, unknown> = {}) =>
    JSON.stringify({...good, ...event, heartbeat: {...(good as {heartbeat: object}).heartbeat, ...heartbeat}});
  t.is(parseHiveEvent(bad({group_id: 5})), null, 'a numeric group_id');
  t.is(parseHiveEvent(bad({role: 'boss'})), null, 'an unknown role');
  t.is(parseHiveEvent(bad({vram_used: -1})), null, 'negative bytes');
  t.is(parseHiveEvent(bad({model: 7})), null, 'a numeric model');
  t.is(parseHiveEvent(bad({}, {at: 'yesterday'})), null, 'a time that is not one');
  t.is(parseHiveEvent(bad({}, {worker_id: 'w-b'})), null, 'a heartbeat filed under another worker');
  t.is(parseHiveEvent('{"type":"heartbeat"'), null, 'not JSON');
});
