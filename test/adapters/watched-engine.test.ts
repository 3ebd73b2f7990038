/**
 * WatchedEngine around real child processes (node -e …, started the way a worker starts an
 * engine): an exit nobody asked for is a failure reported at once, a stop is not, and a hung
 * engine is failed after its limit of unanswered heartbeats.
 */
import test from 'ava';
import {spawnEngineProcess} from '../../src/adapters/engine-process.js';
import {WatchedEngine} from '../../src/adapters/watched-engine.js';
import {RbeeError} from '../../src/errors.js';
import {isAlive, waitFor} from '../helpers/process-tree.js';

function context() {
  const failures: string[] = [];
  const logs: string[] = [];
  return {failures, logs, reportFailure: (reason: string) => failures.push(reason), log: (message: string) => logs.push(message)};
}

/** A node child running `code`; it prints "up" once its handlers are in place. */
function engine(code: string) {
  const output: string[] = [];
  const process_ = spawnEngineProcess({command: process.execPath, args: ['-e', `${code}; console.log('up')`], onOutput: line => output.push(line)});
  return {process: process_, up: () => waitFor(() => output.includes('up'), 10_000, 'the engine to start')};
}

test('an exit nobody asked for is reported at once, with the name, pid, code and last output', async t => {
  const ctx = context();
  const child = engine(`console.error('CUDA error: out of memory'); setTimeout(() => process.exit(3), 50)`);
  let exits = 0;
  const watched = new WatchedEngine(child.process, ctx, {name: 'acme-serve', onExit: () => exits++});
  await waitFor(() => ctx.failures.length > 0, 10_000, 'the failure report');
  t.regex(ctx.failures[0]!, new RegExp(`^acme-serve \\(pid ${child.process.pid}\\) exited with code 3: .*CUDA error: out of memory`));
  t.is(watched.failure, ctx.failures[0]!);
  const error = t.throws(() => watched.throwIfFailed(), {instanceOf: RbeeError});
  t.is(error.code, 'engine_error');
  t.is(exits, 1);
  t.deepEqual(watched.unanswered(new Error('connection refused')), {error: ctx.failures[0]}, 'a heartbeat after the exit says why');
});

test('a stop that was asked for is no failure, and an engine ignoring SIGTERM is killed after the grace', async t => {
  const ctx = context();
  const child = engine(`process.on('SIGTERM', () => {}); setInterval(() => {}, 1000)`);
  await child.up();
  const watched = new WatchedEngine(child.process, ctx, {name: 'stubborn'});
  await watched.stop(200);
  const exit = await child.process.exited;
  t.is(exit.signal, 'SIGKILL');
  t.false(isAlive(child.process.pid));
  t.deepEqual(ctx.failures, []);
  t.is(watched.failure, null);
  t.notThrows(() => watched.throwIfFailed());
});

test('a killed engine is reported as killed by its signal', async t => {
  const ctx = context();
  const child = engine('setInterval(() => {}, 1000)');
  await child.up();
  const watched = new WatchedEngine(child.process, ctx, {name: 'victim'});
  process.kill(child.process.pid, 'SIGKILL');
  await waitFor(() => watched.failure !== null, 10_000, 'the failure');
  t.regex(watched.failure!, /^victim \(pid \d+\) was killed by SIGKILL: up$/);
});

test("unanswered heartbeats: logged each time, the engine's error once the limit is reached in a row", async t => {
  const ctx = context();
  const child = engine('setInterval(() => {}, 1000)');
  await child.up();
  const watched = new WatchedEngine(child.process, ctx, {name: 'slow', unansweredLimit: 2});
  t.teardown(() => watched.stop(100));
  const memory = {ram_used: 1024};
  t.deepEqual(watched.unanswered(new Error('timeout'), memory), memory, 'one miss: the figures, no error');
  watched.answered();
  t.deepEqual(watched.unanswered(new Error('timeout'), memory), memory, 'an answer in between starts the count again');
  t.deepEqual(watched.unanswered(new Error('timeout'), memory), {...memory, error: 'slow is not answering (2 heartbeat(s) in a row): timeout'});
  t.is(ctx.logs.length, 3);
  t.deepEqual(ctx.failures, [], 'a hung engine is failed through the heartbeat, its process still lives');
});

test("explain: a request error after the engine died becomes the engine's failure", async t => {
  const ctx = context();
  const child = engine('setTimeout(() => process.exit(1), 100)');
  const watched = new WatchedEngine(child.process, ctx, {name: 'dying'});
  const error = await t.throwsAsync(watched.explain(new Error('terminated'), 10_000), {instanceOf: RbeeError});
  t.regex(error.message, /^dying \(pid \d+\) exited with code 1/);
  const alive = engine('setInterval(() => {}, 1000)');
  await alive.up();
  const healthy = new WatchedEngine(alive.process, ctx, {name: 'healthy'});
  t.teardown(() => healthy.stop(100));
  await t.throwsAsync(healthy.explain(new Error('terminated'), 50), {message: 'terminated'}, "a live engine: the request's own error stands");
});
