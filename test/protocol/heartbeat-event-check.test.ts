/**
 * knownGoodHeartbeatEvent against HiveEventSchema: it vouches only for events the schema accepts
 * (and returns them as the schema would), it vouches for the heartbeats the hive sends, and a bad
 * one it leaves to the schema gets the schema's error naming the field — also through the
 * dashboard's parseHiveEvent.
 */
import test from 'ava';
import fc from 'fast-check';
import {HiveEventSchema, knownGoodHeartbeatEvent} from '../../src/protocol/wire.js';
import {parseHiveEvent} from '../../src/tui/event-feed.js';

const at = '2026-12-06T04:20:00.123Z';

function event(heartbeat: Record<string, unknown>, extra: Record<string, unknown> = {}): Record<string, unknown> {
  return {type: 'heartbeat', at, worker_id: 'worker-1', heartbeat: {worker_id: 'worker-1', status: 'ready', ...heartbeat}, ...extra};
}

/** What a real hive's heartbeat events carry: a worker's standard, batch, workflow and group fields. */
const goodHeartbeat = fc.record(
  {
    model: fc.constantFrom('gemma-3-270m-q4_k_m', 'm'),
    device: fc.constantFrom('cpu', 'cuda:0'),
    vram_used: fc.nat(),
    vram_total: fc.maxSafeNat(),
    ram_used: fc.nat(),
    requests_total: fc.nat(),
    tokens_generated: fc.nat(),
    uptime_seconds: fc.double({min: 0, max: 1e9, noNaN: true}),
    last_request_at: fc.option(fc.date({min: new Date('2000-01-01'), max: new Date('2100-01-01'), noInvalidDate: true}).map(date => date.toISOString())),
    adapter_type: fc.constantFrom('llamacpp', 'comfyui'),
    backend: fc.constantFrom('cpu', 'cuda'),
    threads: fc.integer({min: 1, max: 256}),
    error: fc.string(),
    load_progress: fc.double({min: 0, max: 1, noNaN: true}),
    cpu_percent: fc.double({min: 0, max: 6400, noNaN: true}),
    batch_size: fc.nat(64),
    queue_depth: fc.nat(64),
    throughput_tokens_per_second: fc.double({min: 0, max: 1e5, noNaN: true}),
    current_workflow: fc.option(fc.string()),
    workflow_progress: fc.option(
      fc.record({prompt_id: fc.string({minLength: 1}), current_node: fc.string(), progress: fc.double({min: 0, max: 1, noNaN: true})}),
    ),
    group_id: fc.constantFrom('group-bench', 'g.1:x_y'),
    role: fc.constantFrom('coordinator', 'shard'),
    coordinator: fc.constantFrom('worker-0'),
    group_health: fc.constantFrom('healthy', 'degraded'),
  },
  {requiredKeys: []},
);

/** Values of every JSON kind, the awkward ones included. */
const anyJson = fc.oneof(
  fc.constantFrom(null, true, false, '', ' ', -1, -0.5, 0, 0.5, 1, 1.5, 2 ** 53, -(2 ** 53), 1e308, 'x'.repeat(129), 'bad id!', '2026-02-30T00:00:00Z', at),
  fc.string(),
  fc.double(),
  fc.integer(),
  fc.array(fc.string(), {maxLength: 2}),
  fc.dictionary(fc.string({maxLength: 4}), fc.nat(), {maxKeys: 2}),
);

const heartbeatKeys = [
  'worker_id',
  'status',
  'model',
  'device',
  'vram_used',
  'ram_used',
  'requests_total',
  'uptime_seconds',
  'last_request_at',
  'threads',
  'error',
  'load_progress',
  'cpu_percent',
  'queue_depth',
  'throughput_tokens_per_second',
  'current_workflow',
  'workflow_progress',
  'group_id',
  'role',
  'coordinator',
  'group_health',
  'loaded_models',
  'shard_workers',
  'unknown_field',
];

test('every heartbeat it vouches for, the schema accepts and returns alike; good ones it vouches for', t => {
  fc.assert(
    fc.property(goodHeartbeat, heartbeat => {
      const value = JSON.parse(JSON.stringify(event(heartbeat))) as unknown;
      const checked = knownGoodHeartbeatEvent(value);
      const parsed = HiveEventSchema.safeParse(value);
      return parsed.success && checked !== undefined && JSON.stringify(sorted(checked)) === JSON.stringify(sorted(parsed.data));
    }),
    {numRuns: 500},
  );
  t.pass();
});

test('mutated heartbeats: whatever the schema rejects it never vouches for, and what it vouches for the schema returns unchanged', t => {
  let rejected = 0;
  let vouched = 0;
  fc.assert(
    fc.property(
      goodHeartbeat,
      fc.array(fc.tuple(fc.constantFrom(...heartbeatKeys), fc.option(anyJson, {nil: undefined})), {minLength: 1, maxLength: 3}),
      fc.constantFrom('heartbeat', 'at', 'worker_id', 'type', 'extra', null),
      anyJson,
      (heartbeat, changes, eventKey, eventValue) => {
        const beat: Record<string, unknown> = {...heartbeat};
        for (const [key, value] of changes) {
          if (value === undefined) {
            delete beat[key];
          } else {
            beat[key] = value;
          }
        }
        const whole = event(beat);
        if (eventKey !== null) {
          whole[eventKey] = eventValue;
        }
        const value = JSON.parse(JSON.stringify(whole)) as unknown;
        const checked = knownGoodHeartbeatEvent(value);
        const parsed = HiveEventSchema.safeParse(value);
        if (!parsed.success) {
          rejected++;
          return checked === undefined;
        }
        if (checked !== undefined) {
          vouched++;
          return JSON.stringify(sorted(checked)) === JSON.stringify(sorted(parsed.data));
        }
        return true;
      },
    ),
    {numRuns: 5_000},
  );
  t.log(`${rejected} rejected by the schema, ${vouched} vouched for`);
  t.true(rejected > 1_000 && vouched > 20, 'the mutations exercise both sides');
});

test('a bad heartbeat is left to the schema, whose error names the field; the feed drops it', t => {
  const cases: Array<[Record<string, unknown>, string]> = [
    [event({group_id: 7}), 'heartbeat.group_id'],
    [event({queue_depth: -1}), 'heartbeat.queue_depth'],
    [event({threads: 0}), 'heartbeat.threads'],
    [event({load_progress: 1.5}), 'heartbeat.load_progress'],
    [event({last_request_at: '2026-02-30T00:00:00Z'}), 'heartbeat.last_request_at'],
    [event({status: 'sleeping'}), 'heartbeat.status'],
    [event({workflow_progress: {prompt_id: '', current_node: 'n', progress: 0.5}}), 'heartbeat.workflow_progress.prompt_id'],
    [event({}, {worker_id: 'bad id!'}), 'worker_id'],
    [event({}, {at: 'yesterday'}), 'at'],
  ];
  for (const [value, field] of cases) {
    t.is(knownGoodHeartbeatEvent(value), undefined, field);
    const parsed = HiveEventSchema.safeParse(value);
    t.false(parsed.success, field);
    t.true(
      parsed.error?.issues.some(issue => issue.path.join('.') === field),
      `${field}: ${JSON.stringify(parsed.error?.issues)}`,
    );
    t.is(parseHiveEvent(JSON.stringify(value)), null, field);
  }
});

test('unknown keys and nested parts go to the schema, which strips or checks them', t => {
  const withUnknown = event({made_up: 1});
  t.is(knownGoodHeartbeatEvent(withUnknown), undefined);
  const parsed = parseHiveEvent(JSON.stringify(withUnknown));
  t.truthy(parsed);
  t.false(parsed?.type === 'heartbeat' && 'made_up' in parsed.heartbeat);
  const shards = event({shard_workers: [{worker_id: 'worker-2', status: 'healthy'}]});
  t.is(knownGoodHeartbeatEvent(shards), undefined);
  t.truthy(parseHiveEvent(JSON.stringify(shards)));
  t.is(parseHiveEvent(JSON.stringify(event({shard_workers: [{worker_id: 'worker-2', status: 'gone'}]}))), null);
  // A heartbeat filed under another worker's id is dropped, vouched for or not.
  t.is(parseHiveEvent(JSON.stringify(event({}, {worker_id: 'worker-2'}))), null);
});

/** Key order aside (the schema builds its output in its own key order). */
function sorted(value: unknown): unknown {
  if (Array.isArray(value)) {
    return value.map(sorted);
  }
  if (typeof value === 'object' && value !== null) {
    return Object.fromEntries(
      Object.keys(value)
        .sort()
        .map(key => [key, sorted((value as Record<string, unknown>)[key])]),
    );
  }
  return value;
}
