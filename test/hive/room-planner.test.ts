import test from 'ava';
import {planRoom, type LoadedModel, type RoomRequest} from '../../src/hive/room-planner.js';

const gib = 1024 ** 3;

function loaded(name: string, fields: Partial<LoadedModel> = {}): LoadedModel {
  return {workerId: `w-${name}`, name, device: 'cuda:0', bytes: 4 * gib, inFlight: 0, lastActiveAt: 0, pinned: false, awaitingFirstRequest: false, ...fields};
}

function request(fields: Partial<RoomRequest>): RoomRequest {
  return {device: 'cuda:0', need: 6 * gib, free: 2 * gib, headroom: 1 * gib, loaded: [], maxLoadedModels: null, ...fields};
}

const names = (models: readonly LoadedModel[]) => models.map(model => model.name);

test('a model that fits with its headroom starts with nothing stopped', t => {
  t.deepEqual(planRoom(request({free: 7 * gib, loaded: [loaded('a')]})), {kind: 'fits'});
});

test('room comes from idle models on the same device, least recently used first, only as many as needed', t => {
  const plan = planRoom(
    request({
      loaded: [
        loaded('recent', {lastActiveAt: 300}),
        loaded('oldest', {lastActiveAt: 100}),
        loaded('middle', {lastActiveAt: 200}),
        loaded('elsewhere', {device: 'cuda:1', lastActiveAt: 0}),
      ],
    }),
  );
  t.is(plan.kind, 'evict');
  // 2 free + 4 (oldest) = 6 < 6 + 1: a second one must go, the next oldest; the other GPU's frees nothing here.
  t.deepEqual(plan.kind === 'evict' ? names(plan.evict) : [], ['oldest', 'middle']);
});

test('never a model with requests in flight: the start waits for it instead; never a pinned one, nor one that has not served its first request', t => {
  const busy = planRoom(request({loaded: [loaded('busy', {inFlight: 1, bytes: 6 * gib}), loaded('pinned', {pinned: true, lastActiveAt: -1})]}));
  t.deepEqual(busy.kind === 'wait' ? names(busy.busy) : busy, ['busy']);
  const fresh = planRoom(request({loaded: [loaded('fresh', {awaitingFirstRequest: true, bytes: 6 * gib})], free: 2 * gib}));
  t.deepEqual(fresh.kind === 'wait' ? names(fresh.busy) : fresh, ['fresh']);
});

test('nothing can make room: refused, naming the device, the figures and what is loaded there', t => {
  const plan = planRoom(request({need: 30 * gib, loaded: [loaded('pinned', {pinned: true}), loaded('idle')]}));
  t.is(plan.kind, 'refuse');
  const reason = plan.kind === 'refuse' ? plan.reason : '';
  t.regex(reason, /^cuda:0 has 2\.00 GiB free and needs 30\.00 GiB plus 1\.00 GiB headroom/);
  t.regex(reason, /loaded there: pinned \(4\.00 GiB, pinned\), idle \(4\.00 GiB\)/);
});

test('maxLoadedModels: the least recently used idle model goes, on any device, even when memory would do', t => {
  const plan = planRoom(
    request({
      free: 40 * gib,
      maxLoadedModels: 2,
      loaded: [loaded('gpu1', {device: 'cuda:1', lastActiveAt: 10}), loaded('gpu0', {lastActiveAt: 20})],
    }),
  );
  t.deepEqual(plan.kind === 'evict' ? names(plan.evict) : plan, ['gpu1']);
  const full = planRoom(request({free: 40 * gib, maxLoadedModels: 1, loaded: [loaded('only', {pinned: true})]}));
  t.is(full.kind, 'refuse');
  t.regex(full.kind === 'refuse' ? full.reason : '', /1 of at most 1 models are loaded/);
});
