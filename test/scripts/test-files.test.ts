/**
 * The test runner's counting (scripts/test-files.mjs) against real ava runs of fixture files: a
 * mixed file, a file that hangs until ava's inactivity timeout (which crashes ava 7's TAP reporter,
 * hence the default reporter), and a file whose worker exits mid-test.
 */
import {spawnSync} from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import {fileURLToPath} from 'node:url';
import test from 'ava';
import {failureDetails, orderByDuration, parseAvaOutput, readDurations, unitTestFiles, writeDurations} from '../../scripts/test-files.mjs';

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
  t.is(counts.fail, 2, output);
  t.is(counts.skip, 2, output);
  t.deepEqual(counts.failed.map(title => title.split(' ')[0]).sort(), ['fails', 'rejects']);
});

test("a failing file's details: each failure's assertion and reason, none of the per-test lines, bounded", t => {
  const {output} = avaRun('mixed.fixture.mjs');
  const details = failureDetails(output).join('\n');
  t.regex(details, /Difference \(- actual, \+ expected\)/, output);
  t.regex(details, /Rejected promise returned by test[\s\S]*the reason, named/, output);
  t.notRegex(details, /✔ passes/);
  const short = failureDetails(output, 3);
  t.is(short.length, 4);
  t.regex(short[3]!, /more lines in the file's own output above/);
  t.deepEqual(failureDetails('  ✔ passes\n  ─\n\n  1 test passed\n'), [], 'a passing file has none');
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

test('files start longest first by their last recorded time; files never timed start before them, in the given order', t => {
  const files = ['a.test.ts', 'b.test.ts', 'c.test.ts', 'd.test.ts', 'e.test.ts'];
  t.deepEqual(orderByDuration(files, {'a.test.ts': 3, 'c.test.ts': 120.5, 'd.test.ts': 40}), ['b.test.ts', 'e.test.ts', 'c.test.ts', 'd.test.ts', 'a.test.ts']);
  t.deepEqual(orderByDuration(files, {}), files);
});

test('recorded durations: merged with the last record, owner-only, and a damaged record reads as none', t => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'rbee-durations-'));
  t.teardown(() => fs.rmSync(dir, {recursive: true, force: true}));
  const file = path.join(dir, 'cache', 'test-durations.json');
  t.deepEqual(readDurations(file), {});
  writeDurations(file, {'a.test.ts': 12.5, 'b.test.ts': 3});
  writeDurations(file, {'b.test.ts': 4});
  t.deepEqual(readDurations(file), {'a.test.ts': 12.5, 'b.test.ts': 4});
  t.is(fs.statSync(file).mode & 0o777, 0o600);
  fs.writeFileSync(file, '{"a.test.ts": "slow", "b.test.ts": -1, "c.test.ts": 7}');
  t.deepEqual(readDurations(file), {'c.test.ts': 7});
  fs.writeFileSync(file, 'not json');
  t.deepEqual(readDurations(file), {});
});
