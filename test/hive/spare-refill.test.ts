/**
 * When the hive starts a spare worker process (src/hive/spare-refill.ts): at once on a quiet hive,
 * after a while on a busy one, after longer while a worker boots; a loading engine does not hold
 * the held requests' spare back.
 */
import test from 'ava';
import {activityOf, shouldRefill, spareWhileBusyAfterMs, spareWhileStartingAfterMs, type HiveActivity} from '../../src/hive/spare-refill.js';
import type {WorkerView} from '../../src/hive/worker-record.js';

const quiet: HiveActivity = {booting: false, loading: false, inFlight: false, requestsHeld: false};

test('a quiet hive starts its spare at once', t => {
  t.true(shouldRefill(quiet, 0));
});

test('a request in flight holds the spare back until it has lacked one for the busy wait', t => {
  const busy = {...quiet, inFlight: true};
  t.false(shouldRefill(busy, 0));
  t.false(shouldRefill(busy, spareWhileBusyAfterMs - 1));
  t.true(shouldRefill(busy, spareWhileBusyAfterMs));
});

test('a booting worker holds the spare back for the longer wait, busy or not', t => {
  const booting = {...quiet, booting: true};
  t.false(shouldRefill(booting, spareWhileBusyAfterMs));
  t.false(shouldRefill({...booting, inFlight: true}, spareWhileStartingAfterMs - 1));
  t.true(shouldRefill(booting, spareWhileStartingAfterMs));
});

test('requests held for a start count as busy, unless the engine they wait for is already loading', t => {
  t.false(shouldRefill({...quiet, requestsHeld: true}, 0));
  t.true(shouldRefill({...quiet, requestsHeld: true, loading: true}, 0));
});

test("activityOf reads booting, loading and in-flight from the workers' records", t => {
  const worker = (fields: Partial<WorkerView>) => ({state: 'ready', lastHeartbeatAt: new Date(), inFlight: 0, ...fields}) as WorkerView;
  t.deepEqual(activityOf([], true), {...quiet, requestsHeld: true});
  t.deepEqual(activityOf([worker({state: 'starting', lastHeartbeatAt: null})], false), {...quiet, booting: true});
  t.deepEqual(activityOf([worker({state: 'starting'})], false), {...quiet, loading: true});
  t.deepEqual(activityOf([worker({}), worker({state: 'busy', inFlight: 2})], false), {...quiet, inFlight: true});
});
