/**
 * The test runner's counting (scripts/test-files.mjs) against real ava runs of fixture files: a
 * mixed file, a file that hangs until ava's inactivity timeout (which crashes ava 7's TAP reporter,
 * hence the default reporter), and a file whose worker exits mid-test.
 */
import {spawnSync} from 'node:child_process';
import path from 'node:path';
import {fileURLToPath} from 'node:url';
import test from 'ava';
import {parseAvaOutput, unitTestFiles} from '../../scripts/test-files.mjs';

const root = fileURLToPath(new URL('../..', import.meta.url));
const fixtures = path.join(root, 'test/fixtures/ava-runs');

function avaRun(file: string, ...flags: string[]): {output: string; status: number | null} {
  const run = spawnSync(process.execPath, [path.join(root, 'node_modules/ava/entrypoints/cli.mjs'), '--config', 'ava.config.mjs', ...flags, file], {
    cwd: fixtures,
    encoding: 'utf8',
    env: {...process.env, FORCE_COLOR: '0', NO_COLOR: '1'},
    timeout: 60_000,
  });
  return {output: `${run.stdout}${run.stderr}`, status: run.status};
}

test('a mixed file: passes, failures, skips, todos and known failures are each counted', t => {
  const {output, status} = avaRun('mixed.fixture.mjs');
  t.is(status, 1);
  const counts = parseAvaOutput(output);
  t.is(counts.pass, 2, output);
  t.is(counts.fail, 1, output);
  t.is(counts.skip, 2, output);
  t.deepEqual(
    counts.failed.map(title => title.split(' ')[0]),
    ['fails'],
  );
});

test('a file that hangs: every test still pending at the timeout counts as failed, logs are not counted', t => {
  const {output, status} = avaRun('hangs.fixture.mjs', '--timeout=3s');
  t.is(status, 1);
  const counts = parseAvaOutput(output);
  t.is(counts.pass, 0, output);
  t.is(counts.fail, 3, output);
  t.true(counts.failed.every(title => title.endsWith("(pending at ava's timeout)")));
});

test('a file whose worker exits mid-test: the crash is a failure, the test that passed before it is counted', t => {
  const {output, status} = avaRun('crashes.fixture.mjs');
  t.is(status, 1);
  const counts = parseAvaOutput(output);
  t.is(counts.pass, 1, output);
  t.true(counts.fail >= 1, output);
});

test('the unit set holds no test that starts processes or needs the prepared assets', t => {
  const unit = unitTestFiles(root);
  t.true(unit.includes('test/protocol/wire.test.ts'));
  t.false(unit.includes('test/hive/supervision.test.ts'));
  t.false(unit.includes('test/native/correctness.test.ts'));
  t.false(unit.includes('test/scripts/test-files.test.ts'), 'this file runs ava processes');
});
