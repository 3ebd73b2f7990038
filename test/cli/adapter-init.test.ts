/**
 * `rbee adapter init`: the scaffold is a package whose own test passes through `rbee/testing` (the
 * harness runs its stand-in engine process through start, ready, infer, heartbeat and stop, no
 * hive), and that `rbee adapter add` accepts as it is.
 */
import fs from 'node:fs';
import path from 'node:path';
import {fileURLToPath} from 'node:url';
import test from 'ava';
import {execa} from 'execa';
import {rbee, tempHome} from '../helpers/rbee-process.js';

const root = fileURLToPath(new URL('../..', import.meta.url));

test('adapter init scaffolds a plugin whose test passes with the exported harness, and adapter add takes it', async t => {
  const work = tempHome('rbee-adapter-init-');
  const home = tempHome();
  t.teardown(() => fs.rmSync(work, {recursive: true, force: true}));
  const dir = path.join(work, 'rbee-adapter-hello');
  const created = await rbee(['--json', 'adapter', 'init', dir], {env: {RBEE_HOME: home}});
  t.is(created.exitCode, 0, String(created.stderr));
  t.like(JSON.parse(String(created.stdout)), {dir, name: 'local:hello', type: 'hello'});
  for (const file of ['package.json', 'index.js', 'engine.js', 'test/adapter.test.js', 'README.md']) {
    t.true(fs.existsSync(path.join(dir, file)), file);
  }
  // What `npm install` gives the package: rbee itself (this checkout, built).
  fs.mkdirSync(path.join(dir, 'node_modules'));
  fs.symlinkSync(root, path.join(dir, 'node_modules', 'rbee'));
  const tested = await execa(process.execPath, ['--test', 'test/'], {cwd: dir, reject: false, timeout: 90_000});
  t.is(tested.exitCode, 0, `${tested.stdout}\n${tested.stderr}`);
  t.regex(tested.stdout, /# pass 2/);

  const added = await rbee(['--json', 'adapter', 'add', dir], {cwd: work, env: {RBEE_HOME: home}});
  t.is(added.exitCode, 0, String(added.stderr));
  t.like(JSON.parse(String(added.stdout)), {name: 'local:hello', type: 'hello', already_added: false});
});

test("adapter init refuses a folder with files in it, and names that are not an adapter's", async t => {
  const work = tempHome('rbee-adapter-init-');
  t.teardown(() => fs.rmSync(work, {recursive: true, force: true}));
  fs.writeFileSync(path.join(work, 'mine.txt'), 'keep me');
  const busy = await rbee(['adapter', 'init', work]);
  t.is(busy.exitCode, 2);
  t.regex(String(busy.stderr), /is not empty/);
  t.is(fs.readFileSync(path.join(work, 'mine.txt'), 'utf8'), 'keep me');
  const badName = await rbee(['adapter', 'init', path.join(work, 'x'), '--name', 'NoNamespace']);
  t.is(badName.exitCode, 2);
  t.regex(String(badName.stderr), /--name: "NoNamespace" is not a namespaced name/);
});
