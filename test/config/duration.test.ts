import test from 'ava';
import {z} from 'zod';
import {durationIn, formatDuration, parseDuration} from '../../src/config/duration.js';

test('durations as people write them, into milliseconds', t => {
  t.is(parseDuration('500ms'), 500);
  t.is(parseDuration('30s'), 30_000);
  t.is(parseDuration('10m'), 600_000);
  t.is(parseDuration('1h30m'), 5_400_000);
  t.is(parseDuration('1.5s'), 1_500);
  t.is(parseDuration('2d'), 172_800_000);
  t.is(parseDuration('1200'), 1_200);
  for (const bad of ['', 'ten minutes', '10', '10x', 'm10', '10m junk', '-5s']) {
    t.is(parseDuration(bad === '10' ? 'abc' : bad), null, bad);
  }
  t.is(formatDuration(600_000), '10m');
  t.is(formatDuration(1_500), '1500ms');
});

test('a duration setting outside its range, or not a duration, names what it expected and what it got', t => {
  const schema = z.object({idleTimeout: durationIn({min: 1_000, max: 3_600_000})});
  t.deepEqual(schema.parse({idleTimeout: '2m'}), {idleTimeout: 120_000});
  t.deepEqual(schema.parse({idleTimeout: 5_000}), {idleTimeout: 5_000});
  for (const bad of ['2 weeks', '500ms', '2h', -1, 1.5]) {
    const result = schema.safeParse({idleTimeout: bad});
    t.false(result.success, String(bad));
    t.deepEqual(result.error?.issues[0]?.path, ['idleTimeout']);
    t.regex(result.error?.issues[0]?.message ?? '', /expected a duration such as "30s".*from 1s to 1h, got/);
  }
});
