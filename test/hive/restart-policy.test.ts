import test from 'ava';
import {decideRestart, defaultRestartLimits, type EndKind} from '../../src/hive/restart-policy.js';
import type {RestartPolicy} from '../../src/protocol/wire.js';

const now = 1_000_000;
const decide = (policy: RestartPolicy, end: EndKind, recentRestarts: number[] = []) =>
  decideRestart({policy, end, recentRestarts, now, limits: defaultRestartLimits});

const restarts = test.macro((t, policy: RestartPolicy, end: EndKind, expected: boolean) => {
  t.is(decide(policy, end).restart, expected);
});

test('never: a failure stays failed', restarts, 'never', 'failure', false);
test('on-failure: a failure restarts', restarts, 'on-failure', 'failure', true);
test('on-failure: a clean exit does not', restarts, 'on-failure', 'clean-exit', false);
test('always: a clean exit restarts', restarts, 'always', 'clean-exit', true);
test('always: a requested stop does not', restarts, 'always', 'requested', false);

test('backoff doubles with each recent restart and is capped', t => {
  const delays = [0, 1, 2, 3, 4].map(count => {
    const decision = decideRestart({
      policy: 'always',
      end: 'failure',
      now,
      recentRestarts: Array.from({length: count}, (_, index) => now - index * 1000),
      limits: {...defaultRestartLimits, maxRestarts: 10, maxDelayMs: 10_000},
    });
    return decision.restart ? decision.delayMs : -1;
  });
  t.deepEqual(delays, [1_000, 2_000, 4_000, 8_000, 10_000]);
});

test('gives up past the limit within the window, and forgets restarts older than the window', t => {
  const recent = Array.from({length: defaultRestartLimits.maxRestarts}, (_, index) => now - index * 1000);
  const refused = decide('on-failure', 'failure', recent);
  t.false(refused.restart);
  t.regex(refused.restart ? '' : refused.why, /giving up/);
  const old = recent.map(time => time - defaultRestartLimits.windowMs);
  t.true(decide('on-failure', 'failure', old).restart);
});
