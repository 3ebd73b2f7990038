/**
 * One hive per RBEE_HOME: a second `hive start` on a home in use fails at once naming the running
 * hive and touches nothing; a crashed hive leaves no lock behind; a start that cannot bind its port
 * adopts nothing, writes nothing and exits at once.
 */
import {spawn} from 'node:child_process';
import {createHash} from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';
import type {AddressInfo} from 'node:net';
import path from 'node:path';
import test from 'ava';
import Database from 'better-sqlite3';
import {WorkerSpecSchema} from '../../src/protocol/wire.js';
import {isAlive, waitFor} from '../helpers/process-tree.js';
import {getJson, rbee, startHive, tempHome, type RunningHive} from '../helpers/rbee-process.js';

const hives: RunningHive[] = [];

test.after.always(async () => {
  await Promise.all(hives.map(hive => hive.stop()));
});

/** Every file of the home with its bytes' hash and mtime: "touches nothing" is this staying equal. */
function snapshot(home: string): Record<string, string> {
  const files: Record<string, string> = {};
  for (const name of fs.readdirSync(home, {recursive: true}) as string[]) {
    const full = path.join(home, name);
    const stats = fs.statSync(full);
    if (stats.isFile()) {
      files[name] = `${createHash('sha256').update(fs.readFileSync(full)).digest('hex')} ${stats.mtimeMs}`;
    }
  }
  return files;
}

test.serial('a second hive start on the same home fails at once, naming the running hive, and touches nothing', async t => {
  const first = await startHive();
  hives.push(first);
  const before = snapshot(first.home);

  const started = Date.now();
  const second = await rbee(['hive', 'start', '--port', '0'], {env: {RBEE_HOME: first.home}, timeout: 30_000});
  const tookMs = Date.now() - started;

  t.is(second.exitCode, 1, String(second.stderr));
  t.regex(String(second.stderr), new RegExp(`another hive \\(pid ${first.pid}, ${first.url.replace(/\./g, '\\.')}\\) is running on RBEE_HOME`));
  t.regex(String(second.stderr), /\[home_locked\]/);
  t.true(tookMs < 15_000, `failed in ${tookMs} ms`);
  t.deepEqual(snapshot(first.home), before, 'not a byte of the home changed');
  t.is((await getJson(`${first.url}/health`)).status, 200, 'the running hive is untouched');
});

test.serial('a hive killed with -9 leaves no lock: the next start on its home takes it over', async t => {
  const first = await startHive();
  first.child.kill('SIGKILL');
  await first.stop();
  const second = await startHive({home: first.home});
  hives.push(second);
  t.is((await getJson(`${second.url}/health`)).status, 200);
  t.is(JSON.parse(fs.readFileSync(path.join(first.home, 'hive.json'), 'utf8')).pid, second.pid, 'the owner file names the new hive');
});

test.serial('a hive start on a taken port adopts nothing, writes nothing and exits at once', async t => {
  // A home a crashed hive left with one live worker: the start must not take it over.
  const home = tempHome();
  const workerId = 'worker-left0001';
  const plainSecret = 'legacy-plain-secret-0123456789abcdef';
  // A stand-in for that worker: a live process whose command line names the worker id, as a real one does.
  const leftWorker = spawn(process.execPath, ['-e', 'setInterval(() => {}, 1000)', workerId], {stdio: 'ignore', detached: true});
  t.teardown(() => leftWorker.kill('SIGKILL'));
  // The row as an older hive wrote it (the secret in plain text): what a home from before this version holds.
  const legacy = new Database(path.join(home, 'hive.sqlite'));
  legacy.exec(`create table workers (id text primary key, spec text not null, model_name text not null, model_path text,
    state text not null, reason text, pid integer, port integer not null, secret text not null, started_at text not null,
    restarts integer not null default 0, updated_at text not null, group_json text)`);
  legacy
    .prepare(`insert into workers values (?, ?, 'm', '/m.gguf', 'ready', null, ?, 1, ?, ?, 0, ?, null)`)
    .run(
      workerId,
      JSON.stringify(WorkerSpecSchema.parse({model: '/m.gguf', type: 'llamacpp'})),
      leftWorker.pid!,
      plainSecret,
      new Date().toISOString(),
      new Date().toISOString(),
    );
  legacy.close();
  const db = new Database(path.join(home, 'hive.sqlite'), {readonly: true});
  const rowBefore = db.prepare('select * from workers').all();
  db.close();

  const taken = http.createServer();
  await new Promise<void>(resolve => taken.listen(0, '127.0.0.1', resolve));
  t.teardown(() => taken.close());
  const port = (taken.address() as AddressInfo).port;

  const started = Date.now();
  const result = await rbee(['hive', 'start', '--port', String(port)], {env: {RBEE_HOME: home}, timeout: 30_000});
  const tookMs = Date.now() - started;

  t.not(result.exitCode, 0);
  t.regex(String(result.stderr), /already in use/);
  t.notRegex(String(result.stderr), /re-adopted|database connection/);
  t.true(tookMs < 10_000, `exited in ${tookMs} ms`);
  const after = new Database(path.join(home, 'hive.sqlite'), {readonly: true});
  t.deepEqual(after.prepare('select * from workers').all(), rowBefore, 'the row is as the previous hive left it');
  after.close();
  t.true(isAlive(leftWorker.pid!), 'the worker left running was not touched');
  t.false(fs.existsSync(path.join(home, 'hive.json')), 'no owner file stays behind');
  // And the home is free again for the next start.
  const next = await startHive({home});
  hives.push(next);
  await waitFor(async () => (await getJson(`${next.url}/v1/workers/${workerId}`)).status === 200, 5_000, 'the next hive to adopt the row');
  // Reading it, that hive replaced the plain-text secret by its hash, leaving no copy in the files.
  for (const file of fs.readdirSync(home).filter(name => name.startsWith('hive.sqlite'))) {
    t.false(fs.readFileSync(path.join(home, file)).includes(plainSecret), `${file} no longer holds the plain secret`);
  }
  const migrated = new Database(path.join(home, 'hive.sqlite'), {readonly: true});
  t.deepEqual(migrated.prepare('select secret, secret_sha256 from workers').get(), {
    secret: '',
    secret_sha256: createHash('sha256').update(plainSecret).digest('hex'),
  });
  migrated.close();
});
