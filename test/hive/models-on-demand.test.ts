/**
 * Models on demand against the supervisor with stand-in processes: starts, idle stops, evictions
 * and refusals are driven and checked without an engine (the real thing is in on-demand.test.ts).
 */
import test, {type ExecutionContext} from 'ava';
import type {CatalogueEntry} from '../../src/config/schema.js';
import {ModelsOnDemand, type OnDemandSettings} from '../../src/hive/models-on-demand.js';
import type {AutoscaleEvent} from '../../src/protocol/wire.js';
import {setup, until, type HarnessOptions} from './helpers/supervisor-harness.js';

type Options = HarnessOptions & {settings?: Partial<OnDemandSettings>; entries?: Record<string, Partial<CatalogueEntry>>; autoReady?: boolean};

function onDemand(t: ExecutionContext, options: Options = {}) {
  const harness = setup(t, options);
  const entries = options.entries ?? {small: {}};
  const catalogue = Object.fromEntries(
    Object.entries(entries).map(([name, entry]) => [name, {model: harness.model, device: 'cpu', pin: false, type: 'llamacpp', ...entry} as CatalogueEntry]),
  );
  const decisions: AutoscaleEvent[] = [];
  const counts = {started: 0, evicted: 0, waits: 0};
  const models = new ModelsOnDemand({
    supervisor: harness.supervisor,
    catalogue,
    devices: options.devices ?? [{id: 'cpu', name: 'test cpu', memory_total: 8 * 2 ** 30, memory_used: 0}],
    settings: {maxLoadedModels: null, vramHeadroom: 0, idleTimeoutMs: 60_000, startTimeoutMs: 10_000, ...options.settings},
    publish: event => decisions.push(event),
    metrics: {started: () => counts.started++, evicted: () => counts.evicted++, waited: () => counts.waits++},
    log: () => undefined,
    idleCheckMs: 20,
  });
  // Every launched worker says it is ready, as an engine that loads at once would.
  const beaten = new Set<number>();
  const pump = setInterval(() => {
    if (options.autoReady === false) {
      return;
    }
    for (const worker of harness.supervisor.workers.values()) {
      const launch = harness.processes.of(worker.id).at(-1);
      if (worker.state === 'starting' && launch !== undefined && !launch.over && !beaten.has(launch.pid)) {
        beaten.add(launch.pid);
        harness.beat(worker, 'ready');
      }
    }
  }, 5);
  t.teardown(() => {
    clearInterval(pump);
    models.close();
  });
  const request = async (name: string) => {
    const gone = new AbortController();
    await models.ensure(name, gone.signal);
    const worker = [...harness.supervisor.workers.values()].find(record => record.aliases.has(name) && record.state === 'ready')!;
    models.routed(worker.id);
    return {worker, release: harness.supervisor.requestStarted(worker.id)};
  };
  const alive = () => [...harness.supervisor.workers.values()].filter(worker => worker.state !== 'stopped' && worker.state !== 'failed');
  return {...harness, models, decisions, counts, request, alive};
}

test('twenty requests for a cold model start it once, and every one goes on once it serves', async t => {
  const {models, decisions, counts, alive, supervisor} = onDemand(t);
  t.is(models.list().models[0]!.state, 'cold');
  await Promise.all(Array.from({length: 20}, () => models.ensure('small', new AbortController().signal)));
  t.is(alive().length, 1);
  t.is(counts.started, 1);
  t.is(counts.waits, 20);
  t.deepEqual(
    decisions.map(event => [event.action, event.model, event.worker_id]),
    [['started-for-request', 'small', alive()[0]!.id]],
  );
  const worker = alive()[0]!;
  t.is(worker.spec.name, 'small');
  t.true(worker.aliases.has('small'), 'requests may name the catalogue entry');
  t.is(worker.spec.idle_timeout_ms, 60_000, 'the hive-wide idle timeout, as the entry sets none');
  t.like(models.list().models[0], {state: 'ready', worker_id: worker.id});
  t.is(supervisor.workers.size, 1);
});

test('idle past its timeout: stopped, announced; the next request starts it again', async t => {
  const {models, decisions, request, alive, supervisor} = onDemand(t, {entries: {small: {idleTimeout: 150}}});
  const first = await request('small');
  first.release();
  await until(() => supervisor.get(first.worker.id).state === 'stopped', 'the idle stop');
  t.like(decisions.at(-1), {action: 'stopped-idle', model: 'small', worker_id: first.worker.id});
  t.regex(decisions.at(-1)!.reason, /no request for \d+ s \(idle timeout 0 s\)/);
  t.is(models.list().models[0]!.state, 'cold');
  const second = await request('small');
  t.not(second.worker.id, first.worker.id);
  t.is(alive().length, 1);
  second.release();
});

test('a request in flight keeps its model from idling out', async t => {
  const {request, supervisor} = onDemand(t, {entries: {small: {idleTimeout: 50}}});
  const {worker, release} = await request('small');
  await new Promise(resolve => setTimeout(resolve, 300));
  t.is(supervisor.get(worker.id).state, 'ready', 'busy for 6 idle timeouts, still serving');
  release();
  await until(() => supervisor.get(worker.id).state === 'stopped', 'the idle stop once it is free');
  t.pass();
});

test('pinned: never stopped for idleness', async t => {
  const {request, supervisor} = onDemand(t, {entries: {small: {pin: true}}, settings: {idleTimeoutMs: 50}});
  const {worker, release} = await request('small');
  release();
  t.is(worker.spec.idle_timeout_ms, undefined);
  await new Promise(resolve => setTimeout(resolve, 300));
  t.is(supervisor.get(worker.id).state, 'ready');
});

test('maxLoadedModels 1: the idle model is stopped for the other, never one with a request in flight', async t => {
  const {request, decisions, supervisor, alive} = onDemand(t, {entries: {a: {}, b: {}}, settings: {maxLoadedModels: 1}});
  const a = await request('a');
  // b must wait while a answers: a is busy, nothing else can go.
  let bServing = false;
  const b = request('b').then(result => {
    bServing = true;
    return result;
  });
  await new Promise(resolve => setTimeout(resolve, 300));
  t.false(bServing);
  t.is(supervisor.get(a.worker.id).state, 'ready', 'a, busy, was not touched');
  a.release();
  const started = await b;
  t.is(supervisor.get(a.worker.id).state, 'stopped');
  t.deepEqual(
    alive().map(worker => worker.spec.name),
    ['b'],
  );
  t.like(
    decisions.find(event => event.action === 'evicted-for'),
    {model: 'a', worker_id: a.worker.id, for: 'b'},
  );
  started.release();
});

test('a group entry under maxLoadedModels 1: the idle model is stopped for it, and one group serves it', async t => {
  const {models, decisions, request, alive, supervisor} = onDemand(t, {
    groupTypes: ['llamacpp'],
    settings: {maxLoadedModels: 1},
    entries: {small: {}, pair: {group: {devices: ['cpu', 'cpu']}}},
  });
  const small = await request('small');
  small.release();
  const pair = await request('pair');
  pair.release();
  t.is(supervisor.groups.size, 1);
  const group = [...supervisor.groups.values()][0]!;
  t.is(pair.worker.id, group.coordinatorId, 'the group is routed to through its coordinator');
  t.deepEqual(
    alive()
      .map(worker => worker.id)
      .sort(),
    [group.coordinatorId, ...group.shardIds].sort(),
    'small was stopped',
  );
  t.like(
    decisions.find(event => event.action === 'evicted-for'),
    {model: 'small', for: 'pair'},
  );
  t.like(decisions.at(-1), {action: 'started-for-request', model: 'pair', device: 'cpu,cpu', worker_id: group.coordinatorId});
  t.like(
    models.list().models.find(entry => entry.name === 'pair'),
    {device: 'cpu,cpu', worker_id: group.coordinatorId},
  );
});

test('a group entry that does not fit and has nothing to stop: refused naming its devices', async t => {
  const {models, decisions, supervisor} = onDemand(t, {groupTypes: ['llamacpp'], freeBytes: 1_024, entries: {pair: {group: {devices: ['cpu', 'cpu']}}}});
  const error = await t.throwsAsync(models.ensure('pair', new AbortController().signal));
  t.is((error as {code?: string}).code, 'model_unavailable');
  t.regex(error!.message, /cannot start model "pair" on cpu,cpu: the model needs about .* free together.*and no idle model on cpu,cpu may be stopped/);
  t.is(supervisor.groups.size, 0);
  t.like(decisions.at(-1), {action: 'refused-for', model: 'pair', device: 'cpu,cpu'});
});

test('a model that cannot fit: refused with the device and the figures, and announced', async t => {
  const {models, decisions, alive} = onDemand(t, {freeBytes: 1_024});
  const error = await t.throwsAsync(models.ensure('small', new AbortController().signal));
  t.like(error, {code: 'model_unavailable'});
  t.regex(error!.message, /cannot start model "small" on cpu: cpu has 0\.00 GiB free and needs [\d.]+ GiB plus 0\.00 GiB headroom; loaded there: nothing/);
  t.like(decisions.at(-1), {action: 'refused-for', model: 'small', device: 'cpu'});
  t.is(decisions.at(-1)!.figures?.free, 1_024);
  t.is(alive().length, 0);
});

test('a start that fails: the waiting requests get why', async t => {
  const {models, processes, alive} = onDemand(t, {autoReady: false});
  const waiting = models.ensure('small', new AbortController().signal);
  await until(() => alive().length === 1 && processes.of(alive()[0]!.id).length === 1, 'the launch');
  const worker = alive()[0]!;
  // The engine dies before it serves; with restarts used up it stays failed.
  for (let launch = 0; launch < 3; launch++) {
    await until(() => processes.of(worker.id).length === launch + 1, `launch ${launch + 1}`);
    processes.of(worker.id).at(-1)!.exit({code: 1, signal: null});
  }
  const error = await t.throwsAsync(waiting);
  t.like(error, {code: 'model_unavailable'});
  t.regex(error!.message, /model "small" failed to start/);
});

test('a failure its restart policy answers is waited out: the request goes on once the restarted worker serves', async t => {
  const {models, processes, alive, beat, supervisor} = onDemand(t, {autoReady: false});
  let settled = false;
  const waiting = models.ensure('small', new AbortController().signal).finally(() => {
    settled = true;
  });
  await until(() => alive().length === 1 && processes.of(alive()[0]!.id).length === 1, 'the launch');
  const worker = alive()[0]!;
  processes.of(worker.id)[0]!.exit({code: 1, signal: null});
  await until(() => processes.of(worker.id).length === 2, 'the restart after its backoff');
  t.false(settled, 'still waiting: the worker was failed, then restarted');
  beat(supervisor.get(worker.id), 'ready');
  await t.notThrowsAsync(waiting);
  t.is(supervisor.get(worker.id).state, 'ready');
});

test('a client that goes away stops waiting; the start goes on for the next one', async t => {
  const {models, alive, beat} = onDemand(t, {autoReady: false});
  const gone = new AbortController();
  const waiting = models.ensure('small', gone.signal);
  await until(() => alive().length === 1, 'the spawn');
  gone.abort();
  await t.throwsAsync(waiting);
  const next = models.ensure('small', new AbortController().signal);
  await until(() => alive()[0]!.pid !== null, 'the launch');
  beat(alive()[0]!, 'ready');
  await next;
  t.is(alive().length, 1);
});

test('a start past its timeout: the request gets a clear error naming the model and the wait; the start goes on', async t => {
  const {models, alive} = onDemand(t, {autoReady: false, settings: {startTimeoutMs: 150}});
  const error = await t.throwsAsync(models.ensure('small', new AbortController().signal));
  t.like(error, {code: 'worker_not_ready'});
  t.regex(error!.message, /^model "small" is still starting after 150 ms on worker worker-\w+ \(loading 0\/\d+\); try again shortly$/);
  t.is(alive().length, 1, 'the worker keeps starting for the next request');
  t.is(alive()[0]!.state, 'starting');
});

test('device "auto": the GPU with the most room that fits, the CPU only when none does', async t => {
  const gib = 2 ** 30;
  const free: Record<string, number> = {'cuda:0': 2 * gib, 'cuda:1': 6 * gib, cpu: 16 * gib};
  const {models, alive} = onDemand(t, {
    backends: {cpu: {}, cuda: {}},
    devices: [
      {id: 'cuda:0', name: 'fake GPU 0', memory_total: 8 * gib, memory_used: 6 * gib},
      {id: 'cuda:1', name: 'fake GPU 1', memory_total: 8 * gib, memory_used: 2 * gib},
      {id: 'cpu', name: 'test cpu', memory_total: 16 * gib, memory_used: 0},
    ],
    freeBytes: device => free[device] ?? 0,
    entries: {small: {device: 'auto'}, other: {device: 'auto'}},
  });
  await models.ensure('small', new AbortController().signal);
  t.deepEqual(
    alive().map(worker => worker.spec.device),
    ['cuda:1'],
  );
  // No GPU has room any more: the next one goes to the CPU.
  free['cuda:0'] = 0;
  free['cuda:1'] = 0;
  await models.ensure('other', new AbortController().signal);
  t.deepEqual(
    alive()
      .map(worker => worker.spec.device)
      .sort(),
    ['cpu', 'cuda:1'],
  );
});
