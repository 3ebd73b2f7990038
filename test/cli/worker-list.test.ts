/**
 * `rbee worker list` shows what the hive itself routed to each worker the moment a request ends:
 * a real hive and a real worker (the default model), heartbeats a minute apart so no heartbeat can
 * carry the figures in between.
 */
import test from 'ava';
import {WorkerListSchema} from '../../src/protocol/wire.js';
import {rbee, startHive} from '../helpers/rbee-process.js';
import {defaultModelPath} from '../helpers/test-model.js';

test('right after `rbee infer`, `rbee worker list` counts the request and its tokens, no heartbeat needed', async t => {
  const hive = await startHive({args: ['--heartbeat-interval', '60000']});
  t.teardown(() => hive.stop());
  const model = await defaultModelPath();
  const spawned = await rbee(
    ['--json', 'worker', 'spawn', '--model', model, '--threads', '1', '--parallel', '1', '--context-size', '512', '--wait', '--timeout', '120'],
    {hive},
  );
  t.is(spawned.exitCode, 0, String(spawned.stderr));
  const id = (JSON.parse(String(spawned.stdout)) as {worker_id: string}).worker_id;

  const before = WorkerListSchema.parse(JSON.parse(String((await rbee(['--json', 'worker', 'list'], {hive})).stdout)));
  t.like(
    before.workers.find(worker => worker.worker_id === id),
    {requests_routed: 0, tokens_relayed: 0},
  );

  const infer = await rbee(['infer', '--max-tokens', '4', '--temperature', '0', 'The capital of France is'], {hive, timeout: 120_000});
  t.is(infer.exitCode, 0, String(infer.stderr));
  const heardBefore = before.workers.find(worker => worker.worker_id === id)!.last_heartbeat_at;

  const listed = await rbee(['--json', 'worker', 'list'], {hive});
  t.is(listed.exitCode, 0, String(listed.stderr));
  const after = WorkerListSchema.parse(JSON.parse(String(listed.stdout))).workers.find(worker => worker.worker_id === id);
  t.truthy(after);
  t.is(after!.requests_routed, 1);
  t.true(after!.tokens_relayed >= 1, `tokens relayed: ${after!.tokens_relayed}`);
  // Had a heartbeat come in between, the figures could be its: the test would prove nothing.
  t.is(after!.last_heartbeat_at, heardBefore, 'no heartbeat arrived between the request and the listing');

  const text = await rbee(['worker', 'list'], {hive});
  const [header, row] = String(text.stdout)
    .split('\n')
    .filter(line => line.startsWith('ID') || line.startsWith(id))
    .map(line => line.trim().split(/\s+/));
  t.truthy(row, String(text.stdout));
  t.is(row![header!.indexOf('REQS')], '1');
  t.is(row![header!.indexOf('TOKENS')], String(after!.tokens_relayed));
});
