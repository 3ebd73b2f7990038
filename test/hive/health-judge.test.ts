import test from 'ava';
import {judgeHealth} from '../../src/hive/health-judge.js';
import {createWorkerRecord} from '../../src/hive/worker-record.js';
import {WorkerSpecSchema} from '../../src/protocol/wire.js';

const limits = {heartbeatIntervalMs: 1_000, loadStallTimeoutMs: 10_000, missedHeartbeats: 3};
const now = Date.parse('2026-11-27T12:00:00Z');
const ago = (ms: number) => new Date(now - ms);
const record = (fields: Parameters<typeof createWorkerRecord>[0] extends infer F ? Partial<F> : never) =>
  createWorkerRecord({
    id: 'worker-1',
    spec: WorkerSpecSchema.parse({model: 'm', type: 'llamacpp'}),
    modelName: 'm',
    modelPath: null,
    port: 1,
    secret: 's',
    ...fields,
  });

test('a ready worker heard from within 3 intervals is healthy; past them it has missed 3 heartbeats', t => {
  t.is(judgeHealth(record({state: 'ready', pid: 10, launchedAt: ago(60_000), lastHeartbeatAt: ago(2_900)}), now, limits), null);
  t.regex(judgeHealth(record({state: 'ready', pid: 10, launchedAt: ago(60_000), lastHeartbeatAt: ago(3_100)}), now, limits) ?? '', /missed 3 heartbeats/);
});

test('--missed-heartbeats widens the window: 10 intervals on a loaded machine', t => {
  const wide = {...limits, missedHeartbeats: 10};
  t.is(judgeHealth(record({state: 'ready', pid: 10, launchedAt: ago(60_000), lastHeartbeatAt: ago(9_900)}), now, wide), null);
  t.regex(judgeHealth(record({state: 'ready', pid: 10, launchedAt: ago(60_000), lastHeartbeatAt: ago(10_100)}), now, wide) ?? '', /missed 10 heartbeats/);
});

test('a worker gets a start-up grace before its first heartbeat', t => {
  t.is(judgeHealth(record({pid: 10, launchedAt: ago(14_000), lastProgressAt: ago(1_000)}), now, limits), null);
  t.regex(judgeHealth(record({pid: 10, launchedAt: ago(16_000), lastProgressAt: ago(1_000)}), now, limits) ?? '', /missed 3 heartbeats/);
});

test('a load stalls only when its progress stops moving, however long the load takes', t => {
  const slowButMoving = record({pid: 10, launchedAt: ago(600_000), lastHeartbeatAt: ago(500), lastProgressAt: ago(9_000)});
  t.is(judgeHealth(slowButMoving, now, limits), null);
  const stuck = record({pid: 10, launchedAt: ago(600_000), lastHeartbeatAt: ago(500), lastProgressAt: ago(11_000)});
  t.regex(judgeHealth(stuck, now, limits) ?? '', /load stalled: no progress for 11 s/);
});

test('a download with no process yet is judged by its progress alone', t => {
  t.is(judgeHealth(record({lastProgressAt: ago(5_000)}), now, limits), null);
  t.regex(judgeHealth(record({lastProgressAt: ago(20_000)}), now, limits) ?? '', /load stalled/);
});

test('a load whose engine reports no progress is left to the ready timeout: its output is not progress, and it does not stall', t => {
  const loading = {phase: 'loading', done: 0, total: 1000};
  const silent = record({pid: 10, launchedAt: ago(600_000), lastHeartbeatAt: ago(500), lastProgressAt: ago(500_000), progress: loading});
  t.is(judgeHealth(silent, now, limits), null);
  const reported = record({
    pid: 10,
    launchedAt: ago(600_000),
    lastHeartbeatAt: ago(500),
    lastProgressAt: ago(11_000),
    progress: loading,
    lastHeartbeat: {worker_id: 'worker-1', status: 'starting', load_progress: 0.4},
  });
  t.regex(judgeHealth(reported, now, limits) ?? '', /load stalled/);
});
