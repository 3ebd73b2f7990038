#!/usr/bin/env node
// Runs the candle engine's Rust tests (cargo test), then every ava test file, and ends with the one
// line CI reads: "N passed, N failed[, N skipped]", both suites together.
//
// Each test file runs in an ava process of its own (two at a time by default), with ava's default
// reporter, whose per-test lines this script counts. Why not one ava run with --tap: ava's inactivity
// timeout ends the whole run (files not yet started are never run, so never counted), and ava 7's TAP
// reporter crashes on that timeout ("Cannot set properties of undefined (setting 'name')"), losing
// the totals. Here a hung file costs only its own pending tests, which ava lists and this script
// counts as failed; a file whose ava dies without reporting counts one failure more.
//
//   node scripts/run-tests.mjs                        # cargo tests, then every test file
//   node scripts/run-tests.mjs test/hive/fuzz.test.ts # only these files (cargo tests skipped)
//   node scripts/run-tests.mjs --unit                 # the fast inner loop: no real engines or models
//
// Files start longest first, by the seconds each took on this machine last time (recorded in
// ~/.cache/rbee/test-durations.json), so the slow real-engine files do not run alone at the end.
//
// Environment: RBEE_SKIP_CARGO_TESTS=1 (ava only), RBEE_TEST_JOBS (files at a time, default 2),
// RBEE_TEST_FILE_TIMEOUT (seconds a file may take before it is killed, default 1200),
// RBEE_TEST_DURATIONS (where the durations are kept).
import {spawn, spawnSync} from 'node:child_process';
import os from 'node:os';
import path from 'node:path';
import {fileURLToPath} from 'node:url';
import fs from 'node:fs';
import {failureDetails, isIntegrationTest, orderByDuration, parseAvaOutput, readDurations, testFiles, unitTestFiles, writeDurations} from './test-files.mjs';

const root = fileURLToPath(new URL('..', import.meta.url));
const args = process.argv.slice(2);
const unitOnly = args.includes('--unit');
const named = args.filter(arg => arg !== '--unit');
const totals = {pass: 0, fail: 0, skip: 0};
const failures = [];
// What ava said about each failing file, repeated at the end: CI logs are often read from the tail.
const details = [];

if (process.env.RBEE_SKIP_CARGO_TESTS !== '1' && named.length === 0 && !unitOnly) {
  runCargoTests();
}

function runCargoTests() {
  // Same target and profile as `npm run build:native`, so only the test harness is compiled anew.
  const cargo = spawnSync('bash', ['scripts/build-native.sh', 'test'], {
    cwd: root,
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'inherit'],
    maxBuffer: 64 << 20,
  });
  process.stdout.write(cargo.stdout ?? '');
  let sawResult = false;
  for (const match of (cargo.stdout ?? '').matchAll(/^test result: \w+\. (\d+) passed; (\d+) failed; (\d+) ignored/gm)) {
    sawResult = true;
    totals.pass += Number(match[1]);
    totals.fail += Number(match[2]);
    totals.skip += Number(match[3]);
  }
  for (const match of (cargo.stdout ?? '').matchAll(/^test (\S+) \.\.\. FAILED$/gm)) {
    failures.push(`cargo › ${match[1]}`);
  }
  if (cargo.status !== 0 && !sawResult) {
    // cargo could not build or run the tests at all: count it, never report green.
    process.stdout.write(`cargo test exited with ${cargo.status ?? cargo.signal} before reporting results\n`);
    totals.fail += 1;
    failures.push('cargo test (did not run)');
  }
}

const durationsFile = process.env.RBEE_TEST_DURATIONS ?? path.join(os.homedir(), '.cache', 'rbee', 'test-durations.json');
// With no record yet (a fresh machine), the integration files, which start real engines, go first.
const chosen = named.length > 0 ? named : unitOnly ? unitTestFiles(root) : testFiles(root);
const integrationFirst = chosen.filter(file => isIntegrationFile(file)).concat(chosen.filter(file => !isIntegrationFile(file)));
const files = orderByDuration(integrationFirst, readDurations(durationsFile));
const measured = {};

function isIntegrationFile(file) {
  try {
    return isIntegrationTest(fs.readFileSync(path.join(root, file), 'utf8'));
  } catch {
    return false;
  }
}
const jobs = Math.max(1, Number(process.env.RBEE_TEST_JOBS ?? 2) || 2);
const fileTimeoutMs = (Number(process.env.RBEE_TEST_FILE_TIMEOUT ?? 1200) || 1200) * 1000;
const avaCli = path.join(root, 'node_modules/ava/entrypoints/cli.mjs');
const started = Date.now();

/** Runs one file in its own ava; resolves with its counts once ava has exited. */
function runFile(file) {
  return new Promise(resolve => {
    const fileStarted = Date.now();
    // detached: the file's ava and every process its tests left behind can be killed as one group.
    const child = spawn(process.execPath, [avaCli, file], {
      cwd: root,
      detached: true,
      stdio: ['ignore', 'pipe', 'pipe'],
      env: {...process.env, FORCE_COLOR: '0', NO_COLOR: '1'},
    });
    let output = '';
    child.stdout.on('data', chunk => (output += chunk));
    child.stderr.on('data', chunk => (output += chunk));
    let killed = false;
    const watchdog = setTimeout(() => {
      killed = true;
      try {
        process.kill(-child.pid, 'SIGKILL');
      } catch {
        // The group has already exited.
      }
    }, fileTimeoutMs);
    child.on('close', (code, signal) => {
      clearTimeout(watchdog);
      const counts = parseAvaOutput(output);
      const notes = [];
      if (killed) {
        notes.push(`killed after ${fileTimeoutMs / 1000} s`);
      }
      if (code !== 0 && counts.fail === 0) {
        // ava failed without a failing test line (a crash, a file that would not load): count it.
        counts.fail += 1;
        counts.failed.push(`${file} (ava exited with ${code ?? signal} without a failing test line)`);
      }
      resolve({file, output, counts, code, signal, notes, seconds: (Date.now() - fileStarted) / 1000});
    });
  });
}

function report({file, output, counts, notes, seconds}) {
  measured[file] = Math.round(seconds * 10) / 10;
  process.stdout.write(`\n# ${file}\n`);
  process.stdout.write(output.endsWith('\n') ? output : `${output}\n`);
  process.stdout.write(
    `# ${file}: ${counts.pass} passed, ${counts.fail} failed, ${counts.skip} skipped in ${seconds.toFixed(1)} s${notes.length > 0 ? ` (${notes.join('; ')})` : ''}\n`,
  );
  totals.pass += counts.pass;
  totals.fail += counts.fail;
  totals.skip += counts.skip;
  failures.push(...counts.failed.map(title => (title.startsWith(file) ? title : `${file} › ${title}`)));
  if (counts.fail > 0) {
    const lines = failureDetails(output);
    details.push(
      `# ${file}${notes.length > 0 ? ` (${notes.join('; ')})` : ''}`,
      ...(lines.length > 0 ? lines : ["  (ava printed no details: see the file's output above)"]),
      '',
    );
  }
}

const queue = [...files];
await Promise.all(
  Array.from({length: Math.min(jobs, queue.length)}, async () => {
    while (queue.length > 0) {
      report(await runFile(queue.shift()));
    }
  }),
);

try {
  writeDurations(durationsFile, measured);
} catch (error) {
  process.stdout.write(`(the test durations were not recorded in ${durationsFile}: ${error.message})\n`);
}
if (files.length === 0) {
  process.stdout.write('no test files\n');
  totals.fail += 1;
}
if (details.length > 0) {
  process.stdout.write(`\nFailure details:\n${details.join('\n')}`);
}
if (failures.length > 0) {
  process.stdout.write(`\nFailed:\n${failures.map(title => `  ${title}`).join('\n')}\n`);
}
process.stdout.write(`\n${files.length} test files in ${((Date.now() - started) / 1000).toFixed(0)} s\n`);
process.stdout.write(`${totals.pass} passed, ${totals.fail} failed${totals.skip > 0 ? `, ${totals.skip} skipped` : ''}\n`);
process.exit(totals.fail === 0 ? 0 : 1);
