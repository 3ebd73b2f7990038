/** WorkerGroups' policy without processes: a lost member ends the group, which comes back whole unless stopped. */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import test, {type ExecutionContext} from 'ava';
import type {GroupRecord} from '../../src/hive/group-record.js';
import {RestartScheduler} from '../../src/hive/restart-scheduler.js';
import {StateStore} from '../../src/hive/state-store.js';
import {WorkerGroups, type GroupHost} from '../../src/hive/worker-groups.js';
import {createWorkerRecord} from '../../src/hive/worker-record.js';
import {WorkerTable} from '../../src/hive/worker-table.js';
import type {WorkerState} from '../../src/protocol/wire.js';

function setup(t: ExecutionContext, restart: 'never' | 'on-failure' = 'on-failure') {
  const home = fs.mkdtempSync(path.join(os.tmpdir(), 'rbee-group-restart-'));
  const store = new StateStore(path.join(home, 'hive.sqlite'));
  t.teardown(() => {
    store.close();
    fs.rmSync(home, {recursive: true, force: true});
  });
  const calls = {runs: [] as string[], stops: [] as string[], health: [] as string[]};
  // As the supervisor wires it: a member's state change is judged by its group.
  let groups: WorkerGroups | null = null;
  const workers = new WorkerTable({store, onChange: change => change.type === 'state' && groups?.onMemberChange(change.worker)});
  const host: GroupHost = {
    workers,
    restarts: new RestartScheduler({baseDelayMs: 20, maxDelayMs: 100, maxRestarts: 2, windowMs: 60_000}),
    planOptions: () => {
      throw new Error('not used');
    },
    run: id => calls.runs.push(id),
    stop: async (id, reason) => {
      calls.stops.push(id);
      workers.setState(id, 'stopped', reason);
      return workers.require(id);
    },
    ended: () => Promise.resolve(),
    emit: group => calls.health.push(`${group.health}${group.reason === null ? '' : `: ${group.reason}`}`),
    spawned: () => undefined,
    log: () => undefined,
  };
  groups = new WorkerGroups(host);
  const group: GroupRecord = {
    id: 'group-1',
    spec: {model: 'm', devices: ['cpu', 'cpu'], type: 'llamacpp', force: false, restart},
    coordinatorId: 'group-1-0',
    shardIds: ['group-1-1'],
    health: 'healthy',
    reason: null,
    startedAt: new Date(),
    modelBytes: 0,
    totalBytes: 0,
    restarts: 0,
    launchSecret: 'launch-secret-1',
  };
  groups.groups.set(group.id, group);
  for (const [index, role] of (['coordinator', 'shard'] as const).entries()) {
    const record = createWorkerRecord({
      id: `group-1-${index}`,
      spec: {model: 'm', device: 'cpu', type: 'llamacpp', restart: 'never', force: true, dry_run: false},
      modelName: 'm',
      modelPath: index === 0 ? '/m.gguf' : null,
      port: 1,
      secret: 's',
      state: 'ready',
      group: {
        group,
        membership: {
          group_id: 'group-1',
          role,
          coordinator: 'group-1-0',
          devices: ['cpu', 'cpu'],
          endpoint: role === 'shard' ? '127.0.0.1:1' : null,
          shards: [],
        },
      },
    });
    workers.add(record, 'adopted');
  }
  const lose = (id: string, state: WorkerState = 'failed') => {
    workers.setState(id, state, 'killed by SIGKILL');
  };
  return {groups, group, workers, calls, lose};
}

const sleep = (ms: number) => new Promise(resolve => setTimeout(resolve, ms));

test('a lost member: the others are stopped, the group reads "starting" at once, then comes back whole on the same ids', async t => {
  const {group, calls, lose} = setup(t);
  lose('group-1-1');
  t.deepEqual(calls.stops, ['group-1-0']);
  t.is(group.health, 'starting', 'waiting to restart, not failed: scripts and requests are told to wait');
  t.regex(group.reason ?? '', /restarting in 20 ms after: shard group-1-1 on cpu is failed/);
  await sleep(150);
  t.deepEqual(calls.runs.sort(), ['group-1-0', 'group-1-1']);
  t.is(group.restarts, 1);
  t.not(group.launchSecret, 'launch-secret-1', 'each launch of the group gets a secret of its own');
  t.is(group.health, 'starting');
});

test('stopped while it waits to restart: it stays stopped and nothing is started', async t => {
  const {groups, group, calls, lose} = setup(t);
  lose('group-1-0');
  await groups.stop('group-1', 'asked');
  await sleep(150);
  t.deepEqual(calls.runs, []);
  t.is(group.health, 'stopped');
  t.is(group.restarts, 0);
});

test('restart "never": failed, and stays so; a stop afterwards marks it stopped', async t => {
  const {groups, group, calls, lose} = setup(t, 'never');
  lose('group-1-1');
  t.is(group.health, 'failed');
  await sleep(80);
  t.deepEqual(calls.runs, []);
  await groups.stop('group-1', 'asked');
  t.is(group.health, 'stopped');
});

test('re-adoption: nothing is judged until every member is checked; a group found broken is ended, not restarted', async t => {
  const {groups, group, workers, calls} = setup(t);
  group.health = 'starting';
  groups.adoptAll(() => {
    workers.setState('group-1-0', 'failed', 'gone');
    t.deepEqual(calls.stops, [], 'no sibling is signalled before its own pid is checked');
  });
  t.is(group.health as string, 'failed', 'judged once, after the checks');
  t.deepEqual(calls.stops, ['group-1-1']);
  await sleep(80);
  t.deepEqual(calls.runs, []);
});

test('a member the restarted hive does not know is gone too', t => {
  const {groups, group, workers} = setup(t);
  workers.remove('group-1-1');
  groups.adoptAll(() => undefined);
  t.is(group.health, 'failed');
  t.regex(group.reason ?? '', /group-1-1 is gone/);
});
