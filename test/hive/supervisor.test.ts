/**
 * The worker lifecycle without processes: the supervisor is given stand-in processes (launch,
 * signal, watch) and a memory probe, so each transition is driven and checked directly.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import test from 'ava';
import {HeartbeatSchema} from '../../src/protocol/wire.js';
import type {SpareWorkers} from '../../src/hive/spare-workers.js';
import {FakeProcesses, setup, until} from './helpers/supervisor-harness.js';

test('spawned, launched with its own secret and port, ready on its first ready heartbeat', async t => {
  const {supervisor, processes, spawn, beat, events} = setup(t);
  const worker = await spawn();
  await until(() => processes.of(worker.id).length === 1, 'the launch');
  const [launch] = processes.of(worker.id);
  t.is(worker.state, 'starting');
  t.is(worker.pid, launch!.pid);
  t.true(launch!.options.args.includes('--port') && launch!.options.args.includes(String(worker.port)));
  t.regex(launch!.options.env.RBEE_WORKER_SECRET ?? '', /^[0-9a-f]{32,}$/);
  t.is(launch!.options.env.RBEE_TOKEN, undefined, 'the API token never reaches a worker');
  t.is(events[0]?.type, 'spawned');
  const answer = beat(worker, 'ready');
  t.deepEqual(answer.commands, []);
  t.is(supervisor.get(worker.id).state, 'ready');
  t.is(worker.progress, null, 'what described the load is cleared once it serves');
});

test('a heartbeat with the wrong secret or an unknown id changes nothing', async t => {
  const {supervisor, processes, spawn} = setup(t);
  const worker = await spawn();
  await until(() => processes.of(worker.id).length === 1, 'the launch');
  const heartbeat = HeartbeatSchema.parse({worker_id: worker.id, status: 'ready'});
  t.throws(() => supervisor.heartbeat(heartbeat, 'not-the-secret'), {message: /does not carry that worker's secret/});
  t.throws(() => supervisor.heartbeat({...heartbeat, worker_id: 'worker-nobody'}, 'x'), {message: /unknown worker/});
  t.is(supervisor.get(worker.id).state, 'starting');
  t.is(supervisor.get(worker.id).lastHeartbeat, null);
});

test('a crash under on-failure: starting again after the backoff, on a fresh port, same id and secret; past the limit it stays failed', async t => {
  const {supervisor, processes, spawn, beat} = setup(t);
  const worker = await spawn();
  await until(() => processes.of(worker.id).length === 1, 'the launch');
  beat(worker, 'ready');
  const firstPort = worker.port;
  const firstSecret = processes.of(worker.id)[0]!.options.env.RBEE_WORKER_SECRET;
  processes.of(worker.id)[0]!.exit({code: 1, signal: null});
  await until(() => supervisor.get(worker.id).state === 'starting', 'the restart decision');
  t.regex(worker.reason ?? '', /restarting in 10 ms after: exited with code 1/);
  t.is(worker.lastFailure?.startsWith('exited with code 1'), true);
  await until(() => processes.of(worker.id).length === 2, 'the second launch');
  t.is(worker.restarts, 1);
  t.not(worker.port, firstPort);
  t.is(processes.of(worker.id)[1]!.options.env.RBEE_WORKER_SECRET, firstSecret);
  beat(worker, 'ready');
  t.is(worker.lastFailure, null, 'cleared once it serves again');

  // Two restarts are allowed in the window: the third end is final.
  processes.of(worker.id)[1]!.exit({code: null, signal: 'SIGSEGV'});
  await until(() => processes.of(worker.id).length === 3, 'the third launch');
  processes.of(worker.id)[2]!.exit({code: 1, signal: null});
  await until(() => worker.state === 'failed', 'giving up');
  t.regex(worker.reason ?? '', /giving up/);
  t.is(worker.restarts, 2);
  t.is(worker.pid, null);
});

test('a clean exit under on-failure is final, and a stop is never restarted', async t => {
  const {processes, spawn, beat} = setup(t);
  const clean = await spawn();
  await until(() => processes.of(clean.id).length === 1, 'the launch');
  beat(clean, 'ready');
  processes.of(clean.id)[0]!.exit({code: 0, signal: null});
  await until(() => clean.state === 'stopped', 'the clean end');
  t.regex(clean.reason ?? '', /exited with code 0/);
  t.is(processes.of(clean.id).length, 1);
});

test('stop: SIGTERM to its group, "stopping" until the process is gone, then "stopped"; not restarted', async t => {
  const {supervisor, processes, spawn, beat, states} = setup(t);
  const worker = await spawn({restart: 'always'});
  await until(() => processes.of(worker.id).length === 1, 'the launch');
  beat(worker, 'ready');
  const stopped = await supervisor.stop(worker.id, 'asked');
  t.is(stopped.state, 'stopped');
  // SIGKILL once it is gone: its group may still hold an engine it started.
  t.deepEqual(processes.of(worker.id)[0]!.signals, ['SIGTERM', 'SIGKILL']);
  t.deepEqual(states(worker.id), ['ready', 'stopping', 'stopped']);
  t.regex(stopped.reason ?? '', /^asked \(killed by SIGTERM\)/);
  t.is(processes.of(worker.id).length, 1);
});

test('stopped while waiting out its backoff: it stays stopped and nothing is launched', async t => {
  const {supervisor, processes, spawn} = setup(t);
  const worker = await spawn();
  await until(() => processes.of(worker.id).length === 1, 'the launch');
  processes.of(worker.id)[0]!.exit({code: 3, signal: null});
  await until(() => worker.state === 'starting' && /restarting/.test(worker.reason ?? ''), 'the restart decision');
  await supervisor.stop(worker.id, 'asked');
  t.is(worker.state, 'stopped');
  t.is(processes.of(worker.id).length, 1);
});

test('missed heartbeats: failed at once (nothing is routed to it), its group SIGKILLed, then restarted', async t => {
  const {processes, spawn, beat} = setup(t);
  const worker = await spawn();
  await until(() => processes.of(worker.id).length === 1, 'the launch');
  beat(worker, 'ready');
  // Heartbeats stop: 3 intervals of 200 ms later the watchdog fails it.
  await until(() => processes.of(worker.id)[0]!.signals.includes('SIGKILL'), 'the watchdog');
  t.regex(worker.lastFailure ?? worker.reason ?? '', /missed 3 heartbeats/);
  await until(() => processes.of(worker.id).length === 2, 'the restart');
  t.is(worker.restarts, 1);
});

test('a worker reporting an error in its heartbeat is failed with that error', async t => {
  const {processes, spawn, beat} = setup(t);
  const worker = await spawn({restart: 'never'});
  await until(() => processes.of(worker.id).length === 1, 'the launch');
  beat(worker, 'error', {error: 'CUDA out of memory'});
  await until(() => worker.state === 'failed' && worker.pid === null, 'the failure');
  t.regex(worker.reason ?? '', /CUDA out of memory/);
});

test('requests in and out are counted by the table, once per request', async t => {
  const {supervisor, processes, spawn, beat} = setup(t);
  const worker = await spawn();
  await until(() => processes.of(worker.id).length === 1, 'the launch');
  beat(worker, 'ready');
  const first = supervisor.requestStarted(worker.id);
  const second = supervisor.requestStarted(worker.id);
  t.is(worker.inFlight, 2);
  first();
  first();
  t.is(worker.inFlight, 1, 'a release counts once');
  second();
  t.is(worker.inFlight, 0);
});

test('drain and shutdown travel with the next heartbeat answer; a shutdown exit is a requested end', async t => {
  const {supervisor, processes, spawn, beat} = setup(t);
  const worker = await spawn({restart: 'always'});
  await until(() => processes.of(worker.id).length === 1, 'the launch');
  beat(worker, 'ready');
  supervisor.command(worker.id, {type: 'drain'});
  t.true(worker.draining);
  supervisor.command(worker.id, {type: 'shutdown', reason: 'maintenance'});
  t.deepEqual(
    beat(worker, 'ready').commands.map(command => command.type),
    ['drain', 'shutdown'],
  );
  t.deepEqual(beat(worker, 'ready').commands, [], 'delivered once');
  processes.of(worker.id)[0]!.exit({code: 0, signal: null});
  await until(() => worker.state === 'stopped', 'the end');
  t.regex(worker.reason ?? '', /^shutdown: maintenance/);
  t.is(processes.of(worker.id).length, 1, 'a requested end is not restarted, whatever the policy');
});

test('admission asks the injected memory probe: a model that does not fit is refused before anything starts', async t => {
  const {supervisor, processes, spawn} = setup(t, {freeBytes: 1024});
  await t.throwsAsync(spawn(), {message: /needs about .* but cpu has 0 MiB free/});
  t.is(processes.launched.length, 0);
  t.is(supervisor.workers.size, 0);
});

test('a restarted hive re-adopts the live worker from the store and fails the one whose process is gone', async t => {
  const home = fs.mkdtempSync(path.join(os.tmpdir(), 'rbee-supervisor-adopt-'));
  t.teardown(() => fs.rmSync(home, {recursive: true, force: true}));
  // The first hive never judges its workers here: it stands for a hive that then crashed.
  const first = setup(t, {home, heartbeatIntervalMs: 600_000});
  const alive = await first.spawn();
  const gone = await first.spawn();
  await until(() => first.processes.launched.length === 2, 'both launches');
  first.beat(alive, 'ready');
  const secret = first.processes.of(alive.id)[0]!.options.env.RBEE_WORKER_SECRET;

  // The next hive finds one process still running; the other pid is gone.
  const processes = new FakeProcesses();
  processes.seed(alive.pid!, alive.id);
  const second = setup(t, {home, processes});
  const result = second.supervisor.adoptFromStore();
  t.deepEqual(result, {adopted: [alive.id], failed: [gone.id]});
  const adopted = second.supervisor.get(alive.id);
  t.true(adopted.adopted);
  t.is(adopted.secret, null, 'only the hash was stored: the key waits for the next heartbeat');
  t.is(second.supervisor.get(gone.id).state, 'failed');
  t.regex(second.supervisor.get(gone.id).reason ?? '', /gone when the hive restarted/);
  // Its next heartbeat proves the old secret; its end is then seen through the watch, and the policy restarts it.
  t.is(second.supervisor.heartbeat(HeartbeatSchema.parse({worker_id: alive.id, status: 'ready'}), secret!).worker.state, 'ready');
  t.is(adopted.secret, secret!);
  processes.of(alive.id)[0]!.exit({code: 1, signal: null});
  await until(() => processes.of(alive.id).length === 2, 'the restart of the adopted worker');
  t.is(processes.of(alive.id)[1]!.options.env.RBEE_WORKER_SECRET, secret);
});

test('spares: none starts while a worker boots; one starts as soon as the worker has heartbeated (its engine loading), though a request waits for it, so a second start right after finds it', async t => {
  const refills: string[] = [];
  let lacking: number | null = null;
  // What the supervisor asks of its spares: a type wanted from the first spawn, lacking one until refilled.
  const spares = {
    want: () => {
      lacking ??= Date.now();
    },
    lackingForMs: () => (lacking === null ? null : Date.now() - lacking),
    refill: () => {
      refills.push(supervisor.get(worker.id).state);
      lacking = null;
    },
    take: () => null,
    assign: () => null,
    discard: () => undefined,
    close: async () => undefined,
  } as unknown as SpareWorkers;
  // A request is held for the model all along (models on demand): it waits for the engine's load, not for the spare.
  const {supervisor, processes, spawn, beat} = setup(t, {spares, heartbeatIntervalMs: 60, requestsHeld: () => true});
  const worker = await spawn();
  await until(() => processes.of(worker.id).length === 1, 'the launch');
  // Several watch ticks while the process boots (no heartbeat yet): no spare.
  await new Promise(resolve => setTimeout(resolve, 200));
  t.deepEqual(refills, []);
  const heard = Date.now();
  beat(worker, 'starting');
  await until(() => refills.length === 1, 'the refill');
  t.deepEqual(refills, ['starting'], 'while the engine loads, not after it is ready');
  // Well before the 5 s after which a busy hive gets its spare anyway.
  t.true(Date.now() - heard < 4_000, `refilled ${Date.now() - heard} ms after the heartbeat`);
});
