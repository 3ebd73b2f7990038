#!/usr/bin/env node
// Runs the candle engine's Rust tests (cargo test), then the whole ava suite, and ends with the one
// line CI reads: "N passed, N failed[, N skipped]", the two suites' totals together.
// Both outputs are passed through so the log keeps every test's line.
// RBEE_SKIP_CARGO_TESTS=1 runs ava alone (arguments, e.g. a file, go to ava).
import {spawn, spawnSync} from 'node:child_process';
import {fileURLToPath} from 'node:url';

const root = fileURLToPath(new URL('..', import.meta.url));
const cargoTotals = {pass: 0, fail: 0, skip: 0};

if (process.env.RBEE_SKIP_CARGO_TESTS !== '1' && process.argv.length <= 2) {
  runCargoTests();
}

function runCargoTests() {
  // Same target and profile as `npm run build:native`, so only the test harness is compiled anew.
  const cargo = spawnSync('bash', ['scripts/build-native.sh', 'test'], {cwd: root, encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'], maxBuffer: 64 << 20});
  process.stdout.write(cargo.stdout ?? '');
  let sawResult = false;
  for (const match of (cargo.stdout ?? '').matchAll(/^test result: \w+\. (\d+) passed; (\d+) failed; (\d+) ignored/gm)) {
    sawResult = true;
    cargoTotals.pass += Number(match[1]);
    cargoTotals.fail += Number(match[2]);
    cargoTotals.skip += Number(match[3]);
  }
  if (cargo.status !== 0 && !sawResult) {
    // cargo could not build or run the tests at all: count it, never report green.
    process.stdout.write(`cargo test exited with ${cargo.status ?? cargo.signal} before reporting results\n`);
    cargoTotals.fail += 1;
  }
}

const cargoFailed = cargoTotals.fail;
const avaCli = fileURLToPath(new URL('../node_modules/ava/entrypoints/cli.mjs', import.meta.url));
const child = spawn(process.execPath, [avaCli, '--tap', ...process.argv.slice(2)], {stdio: ['ignore', 'pipe', 'inherit']});

const avaTotals = {pass: 0, fail: 0, skip: 0, todo: 0};
let notOk = 0;
let buffer = '';
child.stdout.on('data', chunk => {
  process.stdout.write(chunk);
  buffer += String(chunk);
  let newline = buffer.indexOf('\n');
  while (newline !== -1) {
    const line = buffer.slice(0, newline);
    buffer = buffer.slice(newline + 1);
    const total = /^# (pass|fail|skip|todo) (\d+)$/.exec(line.trim());
    if (total) {
      avaTotals[total[1]] = Number(total[2]);
    }
    if (/^not ok \d+/.test(line) && !/# (TODO|SKIP)/.test(line)) {
      notOk++;
    }
    newline = buffer.indexOf('\n');
  }
});

child.on('exit', code => {
  let avaFailed = Math.max(avaTotals.fail, notOk);
  if (code !== 0 && avaFailed === 0) {
    // ava failed without a failing test (a crash, a timeout, no files): count it, never report green.
    avaFailed = 1;
    process.stdout.write(`ava exited with code ${code} without a failing test line\n`);
  }
  const passed = cargoTotals.pass + avaTotals.pass;
  const failed = cargoFailed + avaFailed;
  const skipped = cargoTotals.skip + avaTotals.skip + avaTotals.todo;
  process.stdout.write(`${passed} passed, ${failed} failed${skipped > 0 ? `, ${skipped} skipped` : ''}\n`);
  process.exit(code === 0 && failed === 0 ? 0 : 1);
});
