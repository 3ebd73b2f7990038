import test from 'ava';
import {parseTrace, requestTimeline} from '../../../bench/lib/startup-timeline.js';

test('parseTrace reads the µs digits the marks carry and skips other lines', t => {
  const marks = parseTrace('[trace] 1000.125 hive request received\nsome log line\n  [trace] 1000.5 w-1 adapter called\n');
  t.deepEqual(marks, [
    {at: 1000.125, subject: 'hive', step: 'request received'},
    {at: 1000.5, subject: 'w-1', step: 'adapter called'},
  ]);
});

test("requestTimeline takes each step's first mark inside each request, medians in time order, the client's first token last", t => {
  const mark = (at: number, source: 'hive' | 'worker', step: string) => ({at, subject: source === 'hive' ? 'hive' : 'w-1', step, source});
  const marks = [
    // request 1, sent at 100, first token 5 ms later
    mark(100.5, 'hive', 'request received'),
    mark(101, 'worker', 'request received'),
    mark(101.2, 'worker', 'request received'), // a second mark of the same step: not counted
    mark(104, 'hive', 'first bytes relayed'),
    // request 2, sent at 200, first token 7 ms later
    mark(200.3, 'hive', 'request received'),
    mark(202, 'worker', 'request received'),
    mark(206, 'hive', 'first bytes relayed'),
    // request 3, sent at 300, first token 6 ms later; a mark after its first token is left out
    mark(300.4, 'hive', 'request received'),
    mark(301.5, 'worker', 'request received'),
    mark(305, 'hive', 'first bytes relayed'),
    mark(320, 'hive', 'request received'),
  ];
  const timeline = requestTimeline(marks, [
    {sentAt: 100, ms: 5},
    {sentAt: 200, ms: 7},
    {sentAt: 300, ms: 6},
  ]);
  t.deepEqual(timeline, [
    {step: 'hive: request received', ms: 0.4, seen: 3},
    {step: 'worker: request received', ms: 1.5, seen: 3},
    {step: 'hive: first bytes relayed', ms: 5, seen: 3},
    {step: 'client: first token', ms: 6, seen: 3},
  ]);
});
