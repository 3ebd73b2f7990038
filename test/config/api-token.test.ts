/** One rule for the API token wherever it comes from, and a comparison that does not leak by timing. */
import fs from 'node:fs';
import path from 'node:path';
import test from 'ava';
import {checkApiToken, resolveApiToken} from '../../src/config/api-token.js';
import {RbeeError} from '../../src/errors.js';
import {sameSecret} from '../../src/http/secrets.js';
import {rbee, tempHome} from '../helpers/rbee-process.js';

test('the rule: 16 characters or more, from any source, and the error names the source', t => {
  t.is(resolveApiToken({flag: 'a'.repeat(16)}), 'a'.repeat(16));
  t.is(resolveApiToken({env: {RBEE_TOKEN: 'b'.repeat(20)}}), 'b'.repeat(20));
  t.is(resolveApiToken({env: {}, config: {token: 'c'.repeat(16), path: '/x/rbee.config.json'}}), 'c'.repeat(16));
  t.is(resolveApiToken({env: {RBEE_TOKEN: ''}}), undefined, 'an empty variable is unset, as every RBEE_* one');
  t.is(resolveApiToken({flag: 'f'.repeat(16), env: {RBEE_TOKEN: 'short'}}), 'f'.repeat(16), 'the flag wins');
  const cases: Array<[Parameters<typeof resolveApiToken>[0], RegExp]> = [
    [{flag: ''}, /^--token: the API token is empty; it needs at least 16/],
    [{env: {RBEE_TOKEN: 'a'}}, /^RBEE_TOKEN: the API token has 1 character; it needs at least 16/],
    [{env: {}, config: {token: '0123456789abcde', path: '/x/rbee.config.json'}}, /^hive\.token in \/x\/rbee\.config\.json: the API token has 15 characters/],
  ];
  for (const [sources, message] of cases) {
    const error = t.throws(() => resolveApiToken(sources), {instanceOf: RbeeError});
    t.is(error?.code, 'invalid_request');
    t.regex(error?.message ?? '', message);
  }
  t.throws(() => checkApiToken('x'.repeat(15), 'somewhere'), {message: /^somewhere:/});
});

test('sameSecret compares whole values of any length', t => {
  t.true(sameSecret('a-token-of-enough-length', 'a-token-of-enough-length'));
  t.false(sameSecret('a-token-of-enough-lengtH', 'a-token-of-enough-length'));
  t.false(sameSecret('a-token', 'a-token-of-enough-length'), 'a prefix is not a match');
  t.false(sameSecret('', 'a-token-of-enough-length'));
  t.false(sameSecret(undefined, 'a-token-of-enough-length'));
});

// Each of these would start a hive if the token passed: the bound keeps a regression from hanging the run.
const startFails = test.macro(async (t, args: string[], env: NodeJS.ProcessEnv, message: RegExp, cwd?: string) => {
  const home = tempHome();
  const result = await rbee([...args, 'hive', 'start', '--port', '0'], {
    env: {RBEE_HOME: home, RBEE_TOKEN: '', ...env},
    timeout: 20_000,
    ...(cwd === undefined ? {} : {cwd}),
  });
  t.is(result.exitCode, 2, `stderr: ${String(result.stderr)}`);
  t.regex(String(result.stderr), message);
  t.deepEqual(fs.readdirSync(home), [], 'nothing was written to the home');
});

test("hive start --token '' is a usage error", startFails, ['--token', ''], {}, /--token: the API token is empty/);
test('RBEE_TOKEN=a is a usage error, on loopback too', startFails, [], {RBEE_TOKEN: 'a'}, /RBEE_TOKEN: the API token has 1 character/);
test(
  'a short --token does not pass the non-loopback guard',
  startFails,
  ['--token', 'short'],
  {RBEE_HOST: '0.0.0.0'},
  /--token: the API token has 5 characters/,
);
test('a short hive.token in the config file is refused, naming the file', async t => {
  const project = tempHome('rbee-token-project-');
  fs.writeFileSync(path.join(project, 'rbee.config.json'), JSON.stringify({hive: {token: 'short'}}));
  const home = tempHome();
  const result = await rbee(['hive', 'start', '--port', '0'], {cwd: project, env: {RBEE_HOME: home, RBEE_TOKEN: ''}, timeout: 20_000});
  t.not(result.exitCode, 0);
  t.regex(String(result.stderr), /rbee\.config\.json/);
  t.regex(String(result.stderr), /token.*at least 16 characters/);
});
test('a client with a short token is stopped before it sends it', async t => {
  const result = await rbee(['--token', 'tiny', 'status'], {env: {RBEE_HIVE_URL: 'http://127.0.0.1:9'}, timeout: 20_000});
  t.is(result.exitCode, 2);
  t.regex(String(result.stderr), /--token: the API token has 4 characters/);
});
