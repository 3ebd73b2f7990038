/** Mistakes a person (or a script) makes at the command line get one clear line, or one JSON document, and exit 2. */
import fs from 'node:fs';
import path from 'node:path';
import test from 'ava';
import {rbee, tempHome} from '../helpers/rbee-process.js';

test('--json usage errors print exactly one JSON error document on stdout', async t => {
  for (const args of [
    ['--json', 'worker', 'spawn'],
    ['--json', 'worker', 'spawn', '--model', 'm', '--bogus'],
    ['--json', 'worker', 'spawn', '--model', 'm', '--max-queue', 'lots'],
  ]) {
    const result = await rbee(args, {timeout: 60_000});
    t.is(result.exitCode, 2, args.join(' '));
    const documents = String(result.stdout).trim().split('\n');
    t.is(documents.length, 1, String(result.stdout));
    const parsed = JSON.parse(documents[0]!) as {error: {code: string; message: string}};
    t.is(parsed.error.code, 'invalid_request');
    t.true(parsed.error.message.length > 0);
  }
});

test('RBEE_PORT=abc rbee hive start is a usage error that names RBEE_PORT, not a silent exit', async t => {
  const result = await rbee(['hive', 'start'], {env: {RBEE_PORT: 'abc', RBEE_HOME: tempHome()}, timeout: 60_000});
  t.is(result.exitCode, 2);
  t.regex(String(result.stderr), /RBEE_PORT must be an integer from 0 to 65535, got "abc"/);
  const json = await rbee(['--json', 'hive', 'start'], {env: {RBEE_PORT: 'abc', RBEE_HOME: tempHome()}, timeout: 60_000});
  t.like(JSON.parse(String(json.stdout)), {error: {code: 'invalid_request'}});
});

test('an RBEE_HOME that cannot be created (/proc/x) fails at once with a clear error', async t => {
  const started = Date.now();
  const result = await rbee(['hive', 'start', '--port', '0'], {env: {RBEE_HOME: '/proc/x/rbee'}, timeout: 60_000});
  t.false(result.timedOut, 'it does not spin');
  t.is(result.exitCode, 2);
  t.regex(String(result.stderr), /RBEE_HOME \/proc\/x\/rbee cannot be created/);
  t.log(`failed after ${Date.now() - started} ms`);
});

test('an error inside rbee.config.ts says the config path and the first line of its cause', async t => {
  const project = tempHome('rbee-bad-config-');
  fs.writeFileSync(path.join(project, 'rbee.config.ts'), 'const port: number = ;\nexport default {hive: {port}};\n');
  const result = await rbee(['hive', 'start', '--port', '0'], {cwd: project, env: {RBEE_HOME: tempHome()}, timeout: 60_000});
  t.is(result.exitCode, 2);
  const line = String(result.stderr).trim().split('\n')[0]!;
  t.true(line.includes(path.join(project, 'rbee.config.ts')), line);
  t.regex(line, /failed to load: ParseError: Unexpected token/);
});
