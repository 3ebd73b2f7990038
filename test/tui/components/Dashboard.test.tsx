/** @jsxRuntime automatic @jsxImportSource react */
// (tsx compiles test files outside tsconfig.json's include: the pragma gives them its react-jsx setting.)
/** The whole dashboard against a fake hive: frames read with lastFrame(), keys sent on stdin. */
import test from 'ava';
import {Dashboard} from '../../../src/tui/components/Dashboard.js';
import {fakeHive, groupInfo, heartbeatEvent, iso, snapshot, workerInfo, type FakeHive} from '../helpers/fake-hive.js';
import {renderTui, type RenderedTui} from '../helpers/render.js';

const fast = {flushMs: 10, tickMs: 50, statusEveryMs: 200, backoff: {initialMs: 30, maxMs: 60}};

function start(hive: FakeHive, size: {columns?: number; rows?: number} = {columns: 160, rows: 40}): RenderedTui {
  return renderTui(<Dashboard api={hive} options={fast} />, size);
}

const now = Date.now();
const twoWorkers = () => [
  workerInfo({
    worker_id: 'worker-aaaa1111',
    started_at: iso(now - 60_000),
    last_heartbeat_at: iso(now),
    last_heartbeat: null,
    context_size: 512,
    parallel: 2,
    threads: 1,
  }),
  workerInfo({worker_id: 'worker-bbbb2222', model: 'qwen2.5-0.5b', type: 'vllm', device: 'cuda:0', started_at: iso(now - 30_000)}),
];

test('header, rows and the detail pane of the first worker', async t => {
  const hive = fakeHive(twoWorkers());
  const ui = start(hive, {columns: 160, rows: 40});
  try {
    const frame = await ui.waitForFrame(/worker-bbbb2222/);
    t.regex(frame, /rbee dashboard {2}http:\/\/127\.0\.0\.1:7833 {2}hive pid 100 · rbee 0\.1\.0 {2}● live/);
    t.regex(frame, /workers 2 ready/);
    t.regex(frame, /ID +TYPE +MODEL +DEVICE +STATUS +VRAM\/RAM +CPU% +REQS +TOK\/S +QUEUE +UPTIME +HEARTBEAT/);
    t.regex(frame, /› worker-aaaa1111 +llamacpp +gemma-3-270m-q4_k_m +cpu +ready/);
    t.regex(frame, / {2}worker-bbbb2222 +vllm +qwen2\.5-0\.5b +cuda:0 +ready/);
    await ui.waitForFrame(/devices cpu ██░░░░░░ 4\.0G\/16\.0G/);
    t.regex(
      ui.frame(),
      /│ worker-aaaa1111 · llamacpp · gemma-3-270m-q4_k_m on cpu · ready · last heartbeat \d+\.\ds ago \(interval not seen yet; stale after 15s\) · pid 4242/,
    );
  } finally {
    ui.unmount();
  }
});

test('heartbeats fill the row: RAM bar, sparkline, queue; the detail pane lists the heartbeat', async t => {
  const hive = fakeHive(twoWorkers());
  const ui = start(hive, {columns: 160, rows: 40});
  try {
    await ui.waitForFrame(/devices cpu/);
    await ui.waitForFrame(/4\.0G\/16\.0G/);
    hive.emit(heartbeatEvent({worker_id: 'worker-aaaa1111', ram_used: 8 * 1024 ** 3, throughput_tokens_per_second: 10, requests_total: 7}, Date.now() - 1_000));
    hive.emit(
      heartbeatEvent({worker_id: 'worker-aaaa1111', ram_used: 8 * 1024 ** 3, throughput_tokens_per_second: 20, requests_total: 9, queue_depth: 2}, Date.now()),
    );
    const frame = await ui.waitForFrame(/████░░░░ 8\.0G\/16\.0G +- +9 +▅█ +20\.0 +2/);
    // The detail pane says it in words, not as the heartbeat's keys.
    t.regex(frame, /│ Ready: idle, 2 waiting in its queue\. +│/);
    t.regex(frame, /│ Throughput: 20\.0 tokens\/s at its last heartbeat · \d+ tokens in 9 requests since it started\. +│/);
    t.regex(frame, /│ Memory: 8\.0G RAM of 16\.0G on cpu \(50%\)\. +│/);
    t.notRegex(frame, /throughput_tokens_per_second|ram_used/);
  } finally {
    ui.unmount();
  }
});

test('j/k and arrows move the selection, and the detail pane follows', async t => {
  const ui = start(fakeHive(twoWorkers()));
  try {
    await ui.waitForFrame(/› worker-aaaa1111/);
    ui.press('j');
    await ui.waitForFrame(/› worker-bbbb2222/);
    t.regex(ui.frame(), /│ worker-bbbb2222 · vllm · qwen2\.5-0\.5b on cuda:0/);
    ui.press('j');
    await new Promise(resolve => setTimeout(resolve, 50));
    t.regex(ui.frame(), /› worker-bbbb2222/, 'stays on the last line');
    ui.press('up');
    await ui.waitForFrame(/› worker-aaaa1111/);
    ui.press('down');
    await ui.waitForFrame(/› worker-bbbb2222/);
    ui.press('k');
    await ui.waitForFrame(/› worker-aaaa1111/);
    t.pass();
  } finally {
    ui.unmount();
  }
});

test('s asks y/n: n leaves the worker alone, y stops it through the API', async t => {
  const hive = fakeHive(twoWorkers());
  let release!: () => void;
  hive.holdStops = new Promise(resolve => {
    release = resolve;
  });
  const ui = start(hive);
  try {
    await ui.waitForFrame(/› worker-aaaa1111/);
    ui.press('j');
    await ui.waitForFrame(/› worker-bbbb2222/);
    ui.press('s');
    await ui.waitForFrame(/Stop worker-bbbb2222 \(qwen2\.5-0\.5b on cuda:0\)\? y\/n/);
    ui.press('n');
    await ui.waitForFrame(frame => !frame.includes('y/n'));
    t.deepEqual(hive.stops, []);
    ui.press('s');
    await ui.waitForFrame(/Stop worker-bbbb2222/);
    ui.press('y');
    await ui.waitForFrame(/stopping worker-bbbb2222…/);
    t.deepEqual(hive.stops, ['worker-bbbb2222']);
    t.regex(ui.frame(), /stop requested/);
    // The hive reports the change on its event stream; the answer to DELETE comes after.
    hive.emit({
      type: 'worker',
      at: new Date().toISOString(),
      change: 'state',
      worker: workerInfo({
        worker_id: 'worker-bbbb2222',
        model: 'qwen2.5-0.5b',
        type: 'vllm',
        device: 'cuda:0',
        state: 'stopping',
        started_at: iso(now - 30_000),
      }),
    });
    await ui.waitForFrame(/worker-bbbb2222 +vllm +qwen2\.5-0\.5b +cuda:0 +stopping/);
    release();
    await ui.waitForFrame(/worker-bbbb2222 stopped/);
  } finally {
    ui.unmount();
  }
});

test('keys typed faster than they are read arrive together and still count one by one', async t => {
  const hive = fakeHive(twoWorkers());
  const ui = start(hive);
  try {
    await ui.waitForFrame(/› worker-aaaa1111/);
    ui.press('js');
    await ui.waitForFrame(/Stop worker-bbbb2222 \(qwen2\.5-0\.5b on cuda:0\)\? y\/n/);
    ui.press('y');
    await ui.waitForFrame(/worker-bbbb2222 stopped/);
    t.deepEqual(hive.stops, ['worker-bbbb2222']);
  } finally {
    ui.unmount();
  }
});

test('r asks, then stops and spawns the same model, device, type and shape, and selects the new worker', async t => {
  const hive = fakeHive(twoWorkers());
  const ui = start(hive);
  try {
    await ui.waitForFrame(/› worker-aaaa1111/);
    ui.press('r');
    await ui.waitForFrame(/Restart worker-aaaa1111 .*y\/n/);
    ui.press('y');
    await ui.waitForFrame(/restarted worker-aaaa1111 as worker-new1/);
    t.deepEqual(hive.stops, ['worker-aaaa1111']);
    t.deepEqual(hive.spawns, [
      {model: '/models/gemma-3-270m-q4_k_m.gguf', device: 'cpu', type: 'llamacpp', restart: 'on-failure', context_size: 512, parallel: 2, threads: 1},
    ]);
    hive.emit({
      type: 'worker',
      at: new Date().toISOString(),
      change: 'spawned',
      worker: workerInfo({worker_id: 'worker-new1', state: 'starting', started_at: new Date().toISOString()}),
    });
    // The new worker takes the old one's row, marked as restarted; the old row is gone from the table.
    const frame = await ui.waitForFrame(/› ↻ worker-new1 +llamacpp .* starting/);
    t.notRegex(frame, /worker-aaaa1111 +llamacpp/);
    t.regex(frame, /restarted by this dashboard from worker-aaaa1111/);
  } finally {
    ui.unmount();
  }
});

test('/ filters by id, model, type or state; esc clears', async t => {
  const ui = start(fakeHive(twoWorkers()));
  try {
    await ui.waitForFrame(/worker-bbbb2222/);
    ui.press('/');
    await ui.waitForFrame(/\/█ {3}enter keeps the filter/);
    ui.press('q');
    ui.press('w');
    ui.press('e');
    let frame = await ui.waitForFrame(/\/qwe█/);
    t.notRegex(frame, /worker-aaaa1111 +llamacpp/);
    t.regex(frame, /worker-bbbb2222/);
    ui.press('enter');
    frame = await ui.waitForFrame(/filter "qwe"/);
    ui.press('/');
    ui.press('x');
    frame = await ui.waitForFrame(/no worker matches "qwex"/);
    ui.press('escape');
    frame = await ui.waitForFrame(frame => !frame.includes('/qwex') && frame.includes('worker-aaaa1111'));
    t.regex(frame, /worker-bbbb2222/);
  } finally {
    ui.unmount();
  }
});

test("? shows the keys, l shows the worker's log lines", async t => {
  const hive = fakeHive(twoWorkers());
  hive.logs['worker-aaaa1111'] = {
    path: '/tmp/logs/worker-aaaa1111.log',
    lines: ['[worker] loading', '[worker] ready: gemma on cpu'],
    note: 'local hive: read from /tmp/logs/worker-aaaa1111.log',
  };
  const ui = start(hive);
  try {
    await ui.waitForFrame(/› worker-aaaa1111/);
    ui.press('?');
    let frame = await ui.waitForFrame(/keys/);
    t.regex(frame, /s +stop the selected worker \(asks y\/n\)/);
    ui.press('escape');
    await ui.waitForFrame(frame => !frame.includes('this help'));
    ui.press('l');
    frame = await ui.waitForFrame(/\[worker\] ready: gemma on cpu/);
    t.regex(frame, /log: local hive: read from \/tmp\/logs\/worker-aaaa1111\.log/);
    t.regex(frame, /\[worker\] loading/);
    ui.press('l');
    await ui.waitForFrame(frame => !frame.includes('[worker] loading'));
  } finally {
    ui.unmount();
  }
});

test('q quits', async t => {
  const ui = start(fakeHive(twoWorkers()));
  await ui.waitForFrame(/worker-aaaa1111/);
  const framesBefore = ui.frames.length;
  ui.press('q');
  // Exited: the app unmounts, and no frame comes after.
  await new Promise(resolve => setTimeout(resolve, 200));
  const framesAfter = ui.frames.length;
  await new Promise(resolve => setTimeout(resolve, 200));
  t.is(ui.frames.length, framesAfter, 'no more renders after q');
  t.true(framesAfter >= framesBefore);
  ui.unmount();
});

test('an empty hive says how to spawn a worker', async t => {
  const ui = start(fakeHive([]));
  try {
    const frame = await ui.waitForFrame(/No workers on this hive yet/);
    t.regex(frame, /Spawn one: rbee worker spawn --model default --wait/);
    t.regex(frame, /workers none/);
  } finally {
    ui.unmount();
  }
  const other = start(fakeHive([], {url: 'http://10.0.0.2:9000'}));
  try {
    await other.waitForFrame(/rbee worker spawn --model default --wait --hive http:\/\/10\.0\.0\.2:9000/);
    t.pass();
  } finally {
    other.unmount();
  }
});

test('s and r on a group member act on the whole group: the question says so; r spawns the group again and selects its new coordinator', async t => {
  const members = [
    workerInfo({
      worker_id: 'group-g1-0',
      group_id: 'group-g1',
      role: 'coordinator',
      device: 'cuda:0',
      started_at: iso(now - 20_000),
      context_size: 1024,
      threads: 4,
    }),
    workerInfo({worker_id: 'group-g1-1', group_id: 'group-g1', role: 'shard', device: 'cuda:1', model_path: null, started_at: iso(now - 20_000)}),
  ];
  const hive = fakeHive(members);
  hive.snapshots = [snapshot(members, now, [groupInfo('group-g1')])];
  const ui = start(hive);
  try {
    await ui.waitForFrame(/▾ group group-g1 · coordinator group-g1-0 · 1 shard · healthy/);
    ui.press('j');
    ui.press('s');
    await ui.waitForFrame(/Stop group-g1-1 .*\? Its whole group group-g1 stops with it\. y\/n/);
    ui.press('n');
    ui.press('r');
    await ui.waitForFrame(/Restart group group-g1: stop every member, then spawn the same model on the same devices\? y\/n/);
    ui.press('y');
    await ui.waitForFrame(/restarted group group-g1 as group-new1/);
    t.deepEqual(hive.groupStops, ['group-g1']);
    t.deepEqual(hive.stops, [], 'no member is stopped on its own');
    t.deepEqual(hive.groupSpawns, [
      {model: '/models/gemma-3-270m-q4_k_m.gguf', devices: ['cuda:0', 'cuda:1'], type: 'llamacpp', restart: 'on-failure', context_size: 1024, threads: 4},
    ]);
    t.deepEqual(hive.spawns, [], "no lone worker is spawned in a member's place");
  } finally {
    ui.unmount();
  }
});

test('a hive restart: reconnecting… with the last state kept, then live again from the new snapshot', async t => {
  const hive = fakeHive(twoWorkers());
  const ui = start(hive);
  try {
    await ui.waitForFrame(/● live/);
    hive.refuse = 'no hive at http://127.0.0.1:7833';
    hive.end();
    let frame = await ui.waitForFrame(/○ reconnecting… \(attempt \d+.*\): no hive at http:\/\/127\.0\.0\.1:7833/);
    t.regex(frame, /worker-aaaa1111/, 'the last known workers stay');
    await ui.waitForFrame(/attempt [3-9]/);
    hive.snapshots.push({...hive.snapshots[0]!, type: 'snapshot', workers: [workerInfo({worker_id: 'worker-cccc3333'})]} as never);
    hive.refuse = null;
    frame = await ui.waitForFrame(/● live/);
    frame = await ui.waitForFrame(/worker-cccc3333/);
    t.notRegex(frame, /worker-aaaa1111/);
  } finally {
    ui.unmount();
  }
});

test('a resize re-lays the table out: narrow terminals drop columns, wide ones get them back', async t => {
  const ui = start(fakeHive(twoWorkers()), {columns: 160, rows: 40});
  try {
    await ui.waitForFrame(/TYPE +MODEL/);
    ui.resize(70, 20);
    const narrow = await ui.waitForFrame(frame => !frame.includes('TYPE') && frame.includes('worker-aaaa1111'));
    t.true(
      narrow.split('\n').every(line => line.length <= 70),
      'no line wider than the terminal',
    );
    t.true(narrow.split('\n').length <= 19, 'one line short of the terminal');
    ui.resize(160, 40);
    await ui.waitForFrame(/TYPE +MODEL/);
  } finally {
    ui.unmount();
  }
});

test('stale heartbeats are flagged in the row and counted in the header', async t => {
  const old = Date.now() - 20_000;
  const ui = start(fakeHive([workerInfo({worker_id: 'worker-stale', last_heartbeat_at: iso(old), last_heartbeat: null})]));
  try {
    const frame = await ui.waitForFrame(/⚠ 1 stale/);
    t.regex(frame, /worker-stale .*⚠ 2\ds/);
  } finally {
    ui.unmount();
  }
});

test('groups render as a tree of coordinator and shards', async t => {
  const hive = fakeHive([
    workerInfo({worker_id: 'worker-coord', started_at: iso(now - 3_000)}),
    workerInfo({worker_id: 'worker-shard1', started_at: iso(now - 2_000)}),
  ]);
  const ui = start(hive, {columns: 160, rows: 40});
  try {
    await ui.waitForFrame(/worker-shard1/);
    hive.emit(heartbeatEvent({worker_id: 'worker-coord', group_id: 'g-llama', role: 'coordinator', group_health: 'healthy'}, Date.now()));
    hive.emit(heartbeatEvent({worker_id: 'worker-shard1', group_id: 'g-llama', role: 'shard', coordinator: 'worker-coord'}, Date.now()));
    const frame = await ui.waitForFrame(/▾ group g-llama · coordinator worker-coord · 1 shard · healthy/);
    t.regex(frame, /› ├ worker-coord/);
    t.regex(frame, / {2}└ worker-shard1/);
  } finally {
    ui.unmount();
  }
});

test('500 workers: only the lines that fit are drawn, and the window follows the selection', async t => {
  const many = Array.from({length: 500}, (_, index) =>
    workerInfo({worker_id: `worker-${String(index).padStart(4, '0')}`, started_at: iso(now - 500_000 + index)}),
  );
  const ui = start(fakeHive(many), {columns: 160, rows: 30});
  try {
    let frame = await ui.waitForFrame(/rows 1-\d+ of 500/);
    t.true(frame.split('\n').length <= 29);
    t.notRegex(frame, /worker-0400/);
    ui.press('pageDown');
    ui.press('pageDown');
    frame = await ui.waitForFrame(/› worker-0020/);
    t.regex(frame, /rows \d+-\d+ of 500/);
  } finally {
    ui.unmount();
  }
});

test('request events drive busy and TOK/S at once, and the totals line adds them up with memory per device', async t => {
  const hive = fakeHive(twoWorkers());
  const ui = start(hive);
  try {
    await ui.waitForFrame(/totals 2 workers running · 0 req\/s · 0 tok\/s/);
    const at = Date.now();
    hive.emit(heartbeatEvent({worker_id: 'worker-aaaa1111', ram_used: 2 * 1024 ** 3, cpu_percent: 150}, at));
    hive.emit({type: 'request', at: iso(at), worker_id: 'worker-aaaa1111', phase: 'started', in_flight: 1});
    let frame = await ui.waitForFrame(/› worker-aaaa1111 +llamacpp .* busy .* 150 /);
    t.regex(frame, /workers 1 busy · 1 ready/);
    t.regex(frame, /totals 2 workers running \(1 busy\) · 0 req\/s · 0 tok\/s · memory held: cpu 2\.0G \(1\) · cuda:0 0B \(1\)/);
    t.regex(frame, /│ Busy: 1 request in flight through the hive\./);
    hive.emit({type: 'request', at: iso(at + 500), worker_id: 'worker-aaaa1111', phase: 'ended', in_flight: 0, tokens: 50});
    frame = await ui.waitForFrame(/› worker-aaaa1111 +llamacpp .* ready .* 10\.0 /);
    t.regex(frame, /totals 2 workers running · 0\.2 req\/s · 10\.0 tok\/s/);
  } finally {
    ui.unmount();
  }
});

test('o sorts by the next key (the footer says which); type names are shown whole', async t => {
  const hive = fakeHive([
    ...twoWorkers(),
    workerInfo({worker_id: 'worker-0000cccc', type: 'tensorrt-llm', model: 'llama-8b', device: 'cuda:0', started_at: iso(now - 10_000)}),
  ]);
  const ui = start(hive);
  try {
    let frame = await ui.waitForFrame(/worker-0000cccc .*o sort \(started\)/s);
    t.regex(frame, /worker-0000cccc +tensorrt-llm +llama-8b/);
    t.true(frame.indexOf('worker-aaaa1111') < frame.indexOf('worker-0000cccc'), 'by start time');
    ui.press('o');
    frame = await ui.waitForFrame(/o sort \(id\)/);
    const rows = frame
      .split('\n')
      .filter(line => /^[ ›] +worker-/.test(line))
      .map(line => /worker-\w+/.exec(line)![0]);
    t.deepEqual(rows, ['worker-0000cccc', 'worker-aaaa1111', 'worker-bbbb2222']);
  } finally {
    ui.unmount();
  }
});

test('with two workers the table is two lines tall and the detail pane takes the screen: sentences, then the throughput chart', async t => {
  const hive = fakeHive(twoWorkers());
  const ui = start(hive, {columns: 160, rows: 40});
  try {
    await ui.waitForFrame(/devices cpu/);
    for (let index = 0; index < 6; index++) {
      hive.emit(heartbeatEvent({worker_id: 'worker-aaaa1111', throughput_tokens_per_second: 5 * (index + 1)}, Date.now() - (6 - index) * 1_000));
    }
    const frame = await ui.waitForFrame(/tokens\/s at each of the last 6 heartbeats \(top: 30\.0\)/);
    const lines = frame.split('\n');
    t.true(lines.length >= 38, `the frame fills the terminal (${lines.length} lines)`);
    t.true(lines.filter(line => line.trim() === '').length <= 2, 'no stretch of blank lines');
    t.regex(frame, /│ ██+ +│/, 'chart bars');
  } finally {
    ui.unmount();
  }
});

test("a models-on-demand decision shows in the event line and in the worker's detail pane", async t => {
  const hive = fakeHive(twoWorkers());
  const ui = start(hive, {columns: 160, rows: 40});
  try {
    await ui.waitForFrame(/› worker-aaaa1111/);
    hive.emit({
      type: 'autoscale',
      at: iso(Date.now()),
      action: 'evicted-for',
      model: 'gemma-3-270m-q4_k_m',
      worker_id: 'worker-aaaa1111',
      device: 'cpu',
      for: 'qwen-big',
      reason: 'idle for 3m, least recently used on cpu; qwen-big needs 2.1G more',
      figures: null,
    });
    const frame = await ui.waitForFrame(/gemma-3-270m-q4_k_m stopped to make room for qwen-big on cpu ·/);
    t.regex(
      frame,
      /│ On demand: gemma-3-270m-q4_k_m stopped to make room for qwen-big on cpu at \d\d:\d\d:\d\d — idle for 3m, least recently used on cpu; qwen-big needs 2\.1G more\./,
    );
    // The other worker's pane says nothing of it.
    ui.press('j');
    await ui.waitForFrame(/› worker-bbbb2222/);
    t.notRegex(ui.frame(), /On demand:/);
  } finally {
    ui.unmount();
  }
});
