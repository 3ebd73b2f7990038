import test from 'ava';
import {judgeGroup, type GroupRecord} from '../../src/hive/group-record.js';
import {createWorkerRecord, isServing, type WorkerRecord} from '../../src/hive/worker-record.js';
import type {GroupMembership, WorkerState} from '../../src/protocol/wire.js';
import {rbee} from '../helpers/rbee-process.js';

function group(health: GroupRecord['health'] = 'starting'): GroupRecord {
  return {
    id: 'group-1',
    spec: {model: 'm', devices: ['cuda:0', 'cuda:1', 'cuda:2'], type: 'llamacpp', force: false, restart: 'never'},
    coordinatorId: 'group-1-0',
    shardIds: ['group-1-1', 'group-1-2'],
    health,
    reason: null,
    startedAt: new Date(),
    modelBytes: 0,
    totalBytes: 0,
    restarts: 0,
    launchSecret: 'launch-secret-1',
  };
}

function member(owner: GroupRecord, index: number, state: WorkerState): WorkerRecord {
  const membership: GroupMembership = {
    group_id: owner.id,
    role: index === 0 ? 'coordinator' : 'shard',
    coordinator: owner.coordinatorId,
    devices: owner.spec.devices,
    endpoint: index === 0 ? null : `127.0.0.1:${5000 + index}`,
    shards: [],
  };
  const record = createWorkerRecord({
    id: `group-1-${index}`,
    spec: {model: 'm', device: owner.spec.devices[index]!, type: 'llamacpp', restart: 'never', force: true, dry_run: false},
    modelName: 'm',
    modelPath: null,
    port: 1,
    secret: 's',
    group: {group: owner, membership},
  });
  record.state = state;
  return record;
}

test('a group is starting until every member serves, then healthy; only its coordinator is routed to, and only then', t => {
  const owner = group();
  const members = [member(owner, 0, 'ready'), member(owner, 1, 'starting'), member(owner, 2, 'ready')];
  t.deepEqual(judgeGroup(owner, members), {health: 'starting', reason: null});
  members[1]!.state = 'ready';
  t.deepEqual(judgeGroup(owner, members), {health: 'healthy', reason: null});
  t.false(isServing(members[0]!), 'the group record still says starting');
  owner.health = 'healthy';
  t.deepEqual(members.map(isServing), [true, false, false]);
});

test('the coordinator reporting a shard it cannot reach makes the group degraded, naming the shard', t => {
  const owner = group('healthy');
  const members = [member(owner, 0, 'ready'), member(owner, 1, 'ready'), member(owner, 2, 'ready')];
  members[0]!.lastHeartbeat = {
    worker_id: 'group-1-0',
    status: 'ready',
    group_health: 'degraded',
    shard_workers: [
      {worker_id: 'group-1-1', status: 'healthy'},
      {worker_id: 'group-1-2', status: 'missing'},
    ],
  };
  const verdict = judgeGroup(owner, members);
  t.is(verdict.health, 'degraded');
  t.regex(verdict.reason ?? '', /group-1-2 missing/);
});

test('one member ended ends the group, whatever the others say; an ended group stays ended', t => {
  const owner = group('healthy');
  const members = [member(owner, 0, 'ready'), member(owner, 1, 'ready'), member(owner, 2, 'failed')];
  members[2]!.reason = 'killed by SIGKILL';
  const verdict = judgeGroup(owner, members);
  t.is(verdict.health, 'failed');
  t.regex(verdict.reason ?? '', /shard group-1-2 on cuda:2 is failed: killed by SIGKILL/);
  owner.health = 'stopped';
  owner.reason = 'asked';
  members[2]!.state = 'ready';
  t.deepEqual(judgeGroup(owner, members), {health: 'stopped', reason: 'asked'});
});

test('rbee worker run refuses a --group that is not a valid membership, naming the field', async t => {
  const common = ['worker', 'run', '--type', 'llamacpp', '--worker-id', 'w1', '--model-path', '/nonexistent.gguf', '--port', '0'];
  const notJson = await rbee([...common, '--group', '{role:'], {});
  t.is(notJson.exitCode, 2);
  t.regex(String(notJson.stderr), /--group: not JSON/);
  const wrong = await rbee(
    [...common, '--group', JSON.stringify({group_id: 'g', role: 'boss', coordinator: 'c', devices: ['cpu'], endpoint: null, shards: []})],
    {},
  );
  t.is(wrong.exitCode, 2);
  t.regex(String(wrong.stderr), /role/);
  t.regex(String(wrong.stderr), /devices/);
});
