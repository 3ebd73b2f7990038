/** Table lines: order, filter, ended workers, and groups as a tree. */
import test from 'ava';
import type {HiveEvent} from '../../src/protocol/wire.js';
import {initialModel, reduceModel} from '../../src/tui/model.js';
import {matchesFilter, selectableIds, tableLines} from '../../src/tui/rows.js';
import {heartbeatEvent, iso, snapshot, t0, workerInfo} from './helpers/fake-hive.js';

function modelOf(events: HiveEvent[]) {
  return reduceModel(initialModel('http://hive', t0), {type: 'events', events, now: t0});
}

test('live workers first, by start time; ended ones after; history hidden unless asked', t => {
  const model = modelOf([
    snapshot([
      workerInfo({worker_id: 'w-old-dead', state: 'failed', started_at: iso(t0 - 9_000)}),
      workerInfo({worker_id: 'w-late', started_at: iso(t0 - 1_000)}),
      workerInfo({worker_id: 'w-early', started_at: iso(t0 - 5_000)}),
    ]),
    {type: 'worker', at: iso(t0), change: 'spawned', worker: workerInfo({worker_id: 'w-seen-end', state: 'starting', started_at: iso(t0 - 8_000)})},
    {type: 'worker', at: iso(t0), change: 'state', worker: workerInfo({worker_id: 'w-seen-end', state: 'stopped', started_at: iso(t0 - 8_000)})},
  ]);
  t.deepEqual(selectableIds(tableLines(model.workers.values(), {filter: '', showHistory: false})), ['w-early', 'w-late', 'w-seen-end']);
  t.deepEqual(selectableIds(tableLines(model.workers.values(), {filter: '', showHistory: true})), ['w-early', 'w-late', 'w-old-dead', 'w-seen-end']);
});

test('the filter matches id, model, type, state and device, ignoring case', t => {
  const model = modelOf([
    snapshot([workerInfo({worker_id: 'w-a', model: 'Qwen2.5-0.5B', type: 'vllm', device: 'cuda:0'}), workerInfo({worker_id: 'w-b', state: 'busy'})]),
  ]);
  const a = model.workers.get('w-a')!;
  t.true(matchesFilter(a, 'qwen'));
  t.true(matchesFilter(a, 'VLLM'));
  t.true(matchesFilter(a, 'cuda'));
  t.true(matchesFilter(a, ' w-a '));
  t.false(matchesFilter(a, 'busy'));
  t.deepEqual(selectableIds(tableLines(model.workers.values(), {filter: 'busy', showHistory: false})), ['w-b']);
});

test('heartbeats with group_id and role make a tree: group line, coordinator, shards', t => {
  const model = modelOf([
    snapshot([
      workerInfo({worker_id: 'w-solo', started_at: iso(t0 - 9_000)}),
      workerInfo({worker_id: 'w-shard1', started_at: iso(t0 - 7_000)}),
      workerInfo({worker_id: 'w-coord', started_at: iso(t0 - 6_000)}),
      workerInfo({worker_id: 'w-shard2', started_at: iso(t0 - 5_000)}),
      workerInfo({worker_id: 'w-after', started_at: iso(t0 - 1_000)}),
    ]),
    heartbeatEvent({worker_id: 'w-shard1', group_id: 'g-1', role: 'shard', coordinator: 'w-coord'}, t0),
    heartbeatEvent({worker_id: 'w-coord', group_id: 'g-1', role: 'coordinator', group_health: 'degraded'}, t0),
    heartbeatEvent({worker_id: 'w-shard2', group_id: 'g-1', role: 'shard', coordinator: 'w-coord'}, t0),
  ]);
  const lines = tableLines(model.workers.values(), {filter: '', showHistory: false});
  t.deepEqual(
    lines.map(line =>
      line.kind === 'group' ? `group ${line.groupId} ${line.coordinator} ${line.shards} ${line.health}` : `${line.branch}${line.row.info.worker_id}`,
    ),
    ['w-solo', 'group g-1 w-coord 2 degraded', '├ w-coord', '├ w-shard1', '└ w-shard2', 'w-after'],
  );
  t.deepEqual(selectableIds(lines), ['w-solo', 'w-coord', 'w-shard1', 'w-shard2', 'w-after']);
});

test("a group from the hive's records: members placed before any heartbeat, its health and reason as the hive judged them", t => {
  const group = {
    group_id: 'group-1',
    coordinator: {worker_id: 'group-1-0', device: 'cuda:0', port: 9001, role: 'coordinator' as const},
    workers: [{worker_id: 'group-1-1', device: 'cuda:1', role: 'shard' as const}],
    total_vram: 0,
    model_vram: 0,
    restart: 'never' as const,
    restarts: 0,
    model: 'm',
    type: 'llamacpp',
    devices: ['cuda:0', 'cuda:1'],
    health: 'starting' as const,
    reason: null,
    url: 'http://127.0.0.1:9001',
    started_at: iso(t0),
  };
  let model = modelOf([
    snapshot([
      workerInfo({worker_id: 'group-1-1', group_id: 'group-1', role: 'shard', state: 'starting'}),
      workerInfo({worker_id: 'group-1-0', group_id: 'group-1', role: 'coordinator', state: 'starting'}),
    ]),
    {type: 'group', at: iso(t0), change: 'spawned', group},
  ]);
  const describe = () =>
    tableLines(model.workers.values(), {filter: '', showHistory: false, groups: model.groups}).map(line =>
      line.kind === 'group' ? `group ${line.groupId} ${line.health} ${line.reason ?? '-'}` : `${line.branch}${line.row.info.worker_id}`,
    );
  t.deepEqual(describe(), ['group group-1 starting -', '├ group-1-0', '└ group-1-1']);
  model = reduceModel(model, {
    type: 'events',
    now: t0 + 1_000,
    events: [{type: 'group', at: iso(t0 + 1_000), change: 'health', group: {...group, health: 'failed', reason: 'shard group-1-1 on cuda:1 is failed'}}],
  });
  t.deepEqual(describe()[0], 'group group-1 failed shard group-1-1 on cuda:1 is failed');
  t.true(matchesFilter(model.workers.get('group-1-0')!, 'group-1'), 'the filter finds members by their group');
});
