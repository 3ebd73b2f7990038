import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import test from 'ava';
import {ensurePrivateDir, narrowTree, writePrivateFileAtomically} from '../../src/config/private-home.js';

function scratch(t: {teardown: (fn: () => void) => void}): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'rbee-private-'));
  t.teardown(() => fs.rmSync(dir, {recursive: true, force: true}));
  return dir;
}

const mode = (file: string) => fs.statSync(file).mode & 0o777;

test('a private file: 0600 in a new 0700 folder, replaced whole, no temporary left beside it', t => {
  const file = path.join(scratch(t), 'cache', 'record.json');
  writePrivateFileAtomically(file, '{"a": 1}\n');
  t.is(fs.readFileSync(file, 'utf8'), '{"a": 1}\n');
  t.is(mode(file), 0o600);
  t.is(mode(path.dirname(file)), 0o700);
  writePrivateFileAtomically(file, '{"a": 2}\n');
  t.is(fs.readFileSync(file, 'utf8'), '{"a": 2}\n');
  t.deepEqual(fs.readdirSync(path.dirname(file)), ['record.json']);
});

test('a write that cannot land leaves neither the target nor a temporary', t => {
  const dir = scratch(t);
  const target = path.join(dir, 'taken');
  fs.mkdirSync(target);
  t.throws(() => writePrivateFileAtomically(target, 'x'));
  t.deepEqual(fs.readdirSync(dir), ['taken']);
});

test('a home found open to others is narrowed, and so is what it holds', t => {
  const home = path.join(scratch(t), 'home');
  fs.mkdirSync(home, {mode: 0o755});
  fs.chmodSync(home, 0o755);
  fs.writeFileSync(path.join(home, 'hive.sqlite'), '', {mode: 0o644});
  fs.chmodSync(path.join(home, 'hive.sqlite'), 0o644);
  ensurePrivateDir(home);
  narrowTree(home);
  t.is(mode(home), 0o700);
  t.is(mode(path.join(home, 'hive.sqlite')), 0o600);
});
