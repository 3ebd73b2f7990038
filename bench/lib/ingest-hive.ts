/**
 * The hive of the heartbeat-ingest benchmark, in a process of its own so that its CPU time can be
 * read from /proc/<pid>/stat apart from the load generator's.
 *
 *   node --import tsx bench/lib/ingest-hive.ts <workers>
 *
 * Starts the real hive (startHive, 127.0.0.1, port 0, a throwaway RBEE_HOME, heartbeat interval
 * 1 s like the simulated workers), registers <workers> simulated workers straight into
 * `hive.supervisor.workers` (a bench-only seam: nothing is spawned), prints one JSON line
 * {url, pid, workers: [{id, secret}]} and serves until SIGTERM.
 *
 * The records are 'ready' with pid and launchedAt null: the supervisor's watchdog (judgeHealth in
 * src/hive/health-judge.ts) never fails a worker it did not launch (no missed-heartbeat check
 * without a launch time or pid, no stall check unless 'starting'), so none is failed
 * even if the generator falls behind, and a heartbeat saying 'ready' changes no state, so no
 * SQLite write happens per heartbeat: what is measured is the ingest path itself.
 */
import {randomBytes} from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import {loadAdapters} from '../../src/adapters/load-adapters.js';
import {startHive} from '../../src/hive/hive-server.js';
import {createWorkerRecord} from '../../src/hive/worker-record.js';

const count = Number(process.argv[2]);
if (!Number.isInteger(count) || count < 1 || count > 100_000) {
  process.stderr.write('usage: node --import tsx bench/lib/ingest-hive.ts <workers (1..100000)>\n');
  process.exit(2);
}

const home = fs.mkdtempSync(path.join(os.tmpdir(), 'rbee-bench-ingest-'));
process.on('exit', () => fs.rmSync(home, {recursive: true, force: true}));
const hive = await startHive({
  host: '127.0.0.1',
  port: 0,
  token: undefined,
  rbeeHome: home,
  heartbeatIntervalMs: 1_000,
  stopGraceMs: 1_000,
  // The built-in adapters only: no rbee.config.* of whoever runs the benchmark.
  adapters: await loadAdapters({entries: [], baseDir: process.cwd()}),
  configPath: null,
  workerDefaults: {},
  log: message => process.stderr.write(`[ingest-hive] ${message}\n`),
});

const workers: Array<{id: string; secret: string}> = [];
for (let index = 0; index < count; index++) {
  const id = `sim-${String(index).padStart(6, '0')}`;
  const secret = randomBytes(24).toString('hex');
  hive.supervisor.addExternal(
    createWorkerRecord({
      id,
      spec: {model: 'bench-sim', device: 'cpu', type: 'llamacpp', restart: 'never', force: false, dry_run: false},
      modelName: 'bench-sim',
      modelPath: null,
      port: 0,
      secret,
      state: 'ready',
      pid: null,
      launchedAt: null,
    }),
  );
  workers.push({id, secret});
}

process.stdout.write(`${JSON.stringify({url: hive.url, pid: process.pid, workers})}\n`);

let stopping = false;
const stop = () => {
  if (stopping) {
    return;
  }
  stopping = true;
  // The simulated workers have no process: forget them rather than have stopAll record 10k stops in SQLite.
  workers.forEach(worker => hive.supervisor.forgetExternal(worker.id));
  void hive.close('benchmark over').finally(() => process.exit(0));
};
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
