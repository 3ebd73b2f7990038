#!/usr/bin/env node
// Runs the whole ava suite and ends with the one line CI reads: "N passed, N failed[, N skipped]".
// ava's TAP output carries the totals; it is passed through so the log keeps every test's line.
import {spawn} from 'node:child_process';
import {fileURLToPath} from 'node:url';

const avaCli = fileURLToPath(new URL('../node_modules/ava/entrypoints/cli.mjs', import.meta.url));
const child = spawn(process.execPath, [avaCli, '--tap', ...process.argv.slice(2)], {stdio: ['ignore', 'pipe', 'inherit']});

const totals = {pass: 0, fail: 0, skip: 0, todo: 0};
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
      totals[total[1]] = Number(total[2]);
    }
    if (/^not ok \d+/.test(line) && !/# (TODO|SKIP)/.test(line)) {
      notOk++;
    }
    newline = buffer.indexOf('\n');
  }
});

child.on('exit', code => {
  let failed = Math.max(totals.fail, notOk);
  if (code !== 0 && failed === 0) {
    // ava failed without a failing test (a crash, a timeout, no files): count it, never report green.
    failed = 1;
    process.stdout.write(`ava exited with code ${code} without a failing test line\n`);
  }
  const skipped = totals.skip + totals.todo;
  process.stdout.write(`${totals.pass} passed, ${failed} failed${skipped > 0 ? `, ${skipped} skipped` : ''}\n`);
  process.exit(code === 0 && failed === 0 ? 0 : 1);
});
