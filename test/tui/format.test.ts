/** The fixed-width pieces and the column layout. */
import test from 'ava';
import {layoutColumns, lineCells} from '../../src/tui/columns.js';
import {bar, compactAge, compactAgeSeconds, compactBytes, compactDuration, compactRate, fit, printable, sparkline} from '../../src/tui/format.js';
import {initialModel, reduceModel} from '../../src/tui/model.js';
import {tableLines} from '../../src/tui/rows.js';
import {heartbeatEvent, hiveStatus, snapshot, t0, workerInfo} from './helpers/fake-hive.js';

test('sparklines scale to the window maximum, newest right, padded to width', t => {
  t.is(sparkline([0, 5, 10], 5), '  ▁▅█');
  t.is(sparkline([0, 0], 3), ' ▁▁');
  t.is(sparkline([1, 2, 3, 4, 5, 6], 3), '▆▇█');
  t.is(sparkline([], 2), '  ');
});

test('bars, sizes, durations, ages, rates', t => {
  t.is(bar(0.5, 8), '████░░░░');
  t.is(bar(2, 4), '████');
  t.is(bar(Number.NaN, 3), '░░░');
  t.is(compactBytes(700 * 1024 ** 2), '700M');
  t.is(compactBytes(15.6 * 1024 ** 3), '15.6G');
  t.is(compactDuration(42), '42s');
  t.is(compactDuration(192), '3m12s');
  t.is(compactDuration(7_380), '2h03m');
  t.is(compactAge(800), '0.8s');
  t.is(compactAge(17_000), '17s');
  t.is(compactAgeSeconds(800), '0s');
  t.is(compactAgeSeconds(17_900), '17s');
  t.is(compactAgeSeconds(190_000), '3m');
  t.is(compactRate(42.14), '42.1');
  t.is(compactRate(12_400), '12.4k');
  t.is(fit('worker-abcdef', 8), 'worker-…');
  t.is(fit('7', 3, 'right'), '  7');
  t.is(printable('\u001B[31mred\u001B[0m\tand\u0007 bell'), 'red  and bell');
});

test('narrow terminals drop the least useful columns first; id, model and status always stay', t => {
  const wide = layoutColumns(160, {workflow: false}).map(column => column.key);
  t.deepEqual(wide, ['id', 'type', 'model', 'device', 'status', 'memory', 'cpu', 'requests', 'throughput', 'queue', 'uptime', 'heartbeat']);
  t.true(layoutColumns(160, {workflow: true}).some(column => column.key === 'workflow'));
  const narrow = layoutColumns(80, {workflow: false}).map(column => column.key);
  t.true((['id', 'model', 'status', 'heartbeat'] as const).every(key => narrow.includes(key)));
  t.false(narrow.includes('type'));
  const tiny = layoutColumns(30, {workflow: false}).map(column => column.key);
  t.deepEqual(tiny, ['id', 'model', 'status']);
  for (const width of [60, 80, 100, 120, 160, 200]) {
    const columns = layoutColumns(width, {workflow: true});
    const used = 2 + columns.reduce((sum, column) => sum + column.width, 0) + columns.length - 1;
    t.true(used <= width || columns.length === 3, `fits ${width}`);
  }
});

test('cells: RAM bar against the cpu device, sparkline, workflow bar, stale heartbeat', t => {
  let model = reduceModel(initialModel('http://hive', t0), {type: 'events', events: [snapshot([workerInfo({worker_id: 'w-a'})])], now: t0});
  model = reduceModel(model, {
    type: 'events',
    now: t0 + 2_000,
    events: [
      heartbeatEvent({worker_id: 'w-a', ram_used: 8 * 1024 ** 3, throughput_tokens_per_second: 4}, t0 + 1_000),
      heartbeatEvent(
        {
          worker_id: 'w-a',
          ram_used: 8 * 1024 ** 3,
          throughput_tokens_per_second: 8,
          queue_depth: 3,
          workflow_progress: {prompt_id: 'p', current_node: 'KSampler', progress: 0.5},
        },
        t0 + 2_000,
      ),
    ],
  });
  model = reduceModel(model, {type: 'status', status: hiveStatus, now: t0 + 2_000});
  const columns = layoutColumns(200, {workflow: true});
  const cells = (now: number) => {
    const line = tableLines(model.workers.values(), {filter: '', showHistory: false})[0]!;
    const values = lineCells(line, columns, {now, devices: new Map(model.devices.map(device => [device.id, device]))});
    return Object.fromEntries(columns.map((column, index) => [column.key, values[index]!]));
  };
  const fresh = cells(t0 + 2_500);
  t.is(fresh.memory!.text.trim(), '████░░░░ 8.0G/16.0G');
  t.is(fresh.memory!.color, 'green');
  t.is(fresh.throughput!.text.trim(), '▅█   8.0');
  t.is(fresh.queue!.text.trim(), '3');
  t.is(fresh.workflow!.text.trim(), '███░░░  50% KSampler');
  t.is(fresh.heartbeat!.text.trim(), '0s');
  // Interval seen: 1 s, so stale after 3 s.
  const late = cells(t0 + 5_500);
  t.is(late.heartbeat!.text.trim(), '⚠ 3s');
  t.is(late.heartbeat!.color, 'red');
});
