import test from 'ava';
import {workerRunArgs} from '../../src/hive/worker-command-line.js';
import {createWorkerRecord} from '../../src/hive/worker-record.js';
import {WorkerSpecSchema} from '../../src/protocol/wire.js';

const record = (spec: Record<string, unknown> = {}) =>
  createWorkerRecord({
    id: 'worker-1',
    spec: WorkerSpecSchema.parse({model: 'm', type: 'llamacpp', ...spec}),
    modelName: 'm',
    modelPath: null,
    port: 4321,
    secret: 's',
  });
const options = {
  hiveUrl: () => 'http://127.0.0.1:7833',
  heartbeatIntervalMs: 200,
  orphanTimeoutMs: 600,
  missedHeartbeats: 3,
  configPath: null,
  linksDir: null,
  defaults: {},
};
const flag = (args: string[], name: string) => args[args.indexOf(name) + 1];

test("a worker waits for a silent hive as many intervals as the hive waits for it, or the hive's orphan timeout if longer", t => {
  const model = {path: '/models/m.gguf', name: 'm'};
  t.is(flag(workerRunArgs(record(), model, options), '--orphan-timeout'), '600');
  t.is(flag(workerRunArgs(record(), model, {...options, missedHeartbeats: 20}), '--orphan-timeout'), '4000');
  t.is(flag(workerRunArgs(record(), model, {...options, orphanTimeoutMs: 30_000, missedHeartbeats: 20}), '--orphan-timeout'), '30000');
  // A worker's own heartbeat interval counts, not the hive's.
  t.is(flag(workerRunArgs(record({heartbeat_interval_ms: 1_000}), model, {...options, missedHeartbeats: 5}), '--orphan-timeout'), '5000');
});

test("a worker is told its hive link's socket when the hive keeps links, and none when the path is too long for a socket", t => {
  const model = {path: '/models/m.gguf', name: 'm'};
  t.false(workerRunArgs(record(), model, options).includes('--link'));
  t.is(flag(workerRunArgs(record(), model, {...options, linksDir: '/home/u/.rbee/links'}), '--link'), '/home/u/.rbee/links/worker-1.sock');
  t.false(workerRunArgs(record(), model, {...options, linksDir: `/home/${'u'.repeat(100)}/.rbee/links`}).includes('--link'));
});
