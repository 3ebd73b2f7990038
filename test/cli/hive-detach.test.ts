import fs from 'node:fs';
import path from 'node:path';
import test from 'ava';
import {isAlive, waitFor} from '../helpers/process-tree.js';
import {rbee, startHive, tempHome} from '../helpers/rbee-process.js';

// No RBEE_HIVE_URL: the commands must find the hive through the home's record of it (hive.json, written under the home lock).
const envFor = (home: string) => ({RBEE_HOME: home, RBEE_HIVE_URL: ''});
const recordOf = (home: string) => path.join(home, 'hive.json');

function sessionOf(pid: number): number {
  const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
  return Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[3]);
}

test('hive start --detach returns once the hive answers; it runs in its own session with its record (hive.json) and log in the home (0600); status and hive stop find it without --hive', async t => {
  const home = tempHome();
  let pid = 0;
  t.teardown(() => {
    if (pid > 0 && isAlive(pid)) {
      process.kill(pid, 'SIGKILL');
    }
  });
  const started = await rbee(['--json', 'hive', 'start', '--detach', '--port', '0'], {env: envFor(home), timeout: 150_000});
  t.is(started.exitCode, 0, String(started.stderr));
  const answer = JSON.parse(String(started.stdout)) as {pid: number; url: string; log: string; detached: boolean};
  pid = answer.pid;
  t.true(answer.detached);
  t.true(isAlive(pid), 'the hive outlives the command that started it');
  t.is(sessionOf(pid), pid, 'the hive leads a session of its own');
  t.is((await fetch(`${answer.url}/health`)).status, 200);

  const record = recordOf(home);
  t.like(JSON.parse(fs.readFileSync(record, 'utf8')) as object, {pid, url: answer.url});
  t.is(fs.statSync(record).mode & 0o777, 0o600);
  t.is(answer.log, path.join(home, 'logs', 'hive.log'));
  t.is(fs.statSync(answer.log).mode & 0o777, 0o600);
  t.true(fs.readFileSync(answer.log, 'utf8').includes(answer.url), "the hive's own output is in its log");

  const status = await rbee(['--json', 'status'], {env: envFor(home)});
  t.is(status.exitCode, 0, String(status.stderr));
  t.is((JSON.parse(String(status.stdout)) as {pid: number}).pid, pid);

  const stopped = await rbee(['--json', 'hive', 'stop'], {env: envFor(home), timeout: 90_000});
  t.is(stopped.exitCode, 0, String(stopped.stderr));
  t.deepEqual(JSON.parse(String(stopped.stdout)), {stopped: true, url: answer.url});
  t.false(isAlive(pid));
  t.false(fs.existsSync(record), 'a stopped hive takes its record with it');
});

test("hive start --detach fails with the hive's own error when the hive cannot start, and leaves nothing running", async t => {
  const first = await startHive();
  t.teardown(() => first.stop());
  const port = new URL(first.url).port;
  const home = tempHome();
  const failed = await rbee(['--json', 'hive', 'start', '--detach', '--port', port], {env: envFor(home), timeout: 150_000});
  t.is(failed.exitCode, 1);
  const body = JSON.parse(String(failed.stdout)) as {error: {code: string; message: string}};
  t.is(body.error.code, 'port_in_use');
  t.regex(body.error.message, new RegExp(`the hive did not start: port ${port}`));
  t.false(fs.existsSync(recordOf(home)));
});

test('a foreground hive writes the record too, so commands in another terminal find it', async t => {
  const hive = await startHive();
  t.teardown(() => hive.stop());
  await waitFor(() => fs.existsSync(recordOf(hive.home)), 10_000, "the hive's record");
  const list = await rbee(['--json', 'worker', 'list'], {env: envFor(hive.home)});
  t.is(list.exitCode, 0, String(list.stderr));
  t.deepEqual(JSON.parse(String(list.stdout)), {workers: []});
  await hive.stop();
  t.false(fs.existsSync(recordOf(hive.home)));
});

test('hive start --detach hands --token to the hive by environment, never on its command line; a short one is refused before any spawn', async t => {
  const home = tempHome();
  const short = await rbee(['--json', '--token', 'short', 'hive', 'start', '--detach', '--port', '0'], {env: envFor(home), timeout: 60_000});
  t.is(short.exitCode, 2, String(short.stderr));
  t.regex((JSON.parse(String(short.stdout)) as {error: {message: string}}).error.message, /--token: .*at least 16/);
  t.false(fs.existsSync(recordOf(home)), 'no hive was started');

  const token = 'detached-hive-token-0123456789';
  let pid = 0;
  t.teardown(() => {
    if (pid > 0 && isAlive(pid)) {
      process.kill(pid, 'SIGKILL');
    }
  });
  const started = await rbee(['--json', '--token', token, 'hive', 'start', '--detach', '--port', '0'], {env: envFor(home), timeout: 150_000});
  t.is(started.exitCode, 0, String(started.stderr));
  const answer = JSON.parse(String(started.stdout)) as {pid: number; url: string};
  pid = answer.pid;
  t.false(fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes(token), "the token is not in the hive's argv (world-readable in /proc)");
  t.is((await fetch(`${answer.url}/v1/status`)).status, 401, 'the hive got the token: it demands it');
  t.is((await fetch(`${answer.url}/v1/status`, {headers: {authorization: `Bearer ${token}`}})).status, 200);
  const stopped = await rbee(['--json', '--token', token, 'hive', 'stop'], {env: envFor(home), timeout: 90_000});
  t.is(stopped.exitCode, 0, String(stopped.stderr));
  t.false(isAlive(pid));
});
