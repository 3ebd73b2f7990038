/**
 * What another local user could take from a running hive: its home (0700, files 0600, even when it
 * was found wider), the heartbeat secrets (stored only as sha256), the worker's own port (401
 * without the key the hive holds), the engine's port (its own key), and the API token (never in a
 * worker's or engine's environment). Against a real hive and the echo plugin (test/fixtures).
 */
import {createHash} from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import {fileURLToPath} from 'node:url';
import test from 'ava';
import Database from 'better-sqlite3';
import {InferResponseSchema} from '../../src/protocol/wire.js';
import {descendants, waitFor} from '../helpers/process-tree.js';
import {getJson, postJson, startHive, tempHome, workerAuth, type RunningHive} from '../helpers/rbee-process.js';
import {defaultModelPath} from '../helpers/test-model.js';

const token = 'private-state-test-token-0123456789';
const auth = {authorization: `Bearer ${token}`};
const fixtures = fileURLToPath(new URL('../fixtures/', import.meta.url));
let hive: RunningHive | undefined;

test.after.always(async () => {
  await hive?.stop();
});

function environOf(pid: number): Map<string, string> {
  const entries = fs.readFileSync(`/proc/${pid}/environ`, 'utf8').split('\0').filter(Boolean);
  return new Map(entries.map(entry => [entry.slice(0, entry.indexOf('=')), entry.slice(entry.indexOf('=') + 1)]));
}

function modesUnder(dir: string): Array<[string, string]> {
  return (fs.readdirSync(dir, {recursive: true}) as string[]).map(name => [name, (fs.lstatSync(path.join(dir, name)).mode & 0o777).toString(8)]);
}

test.serial('a home found open is narrowed; secrets are stored hashed; worker and engine ports demand their keys; no token reaches a worker', async t => {
  const project = tempHome('rbee-private-project-');
  fs.cpSync(path.join(fixtures, 'adapter-echo'), path.join(project, 'plugins', 'adapter-echo'), {recursive: true});
  fs.writeFileSync(path.join(project, 'rbee.config.json'), JSON.stringify({adapters: ['./plugins/adapter-echo']}));
  const model = await defaultModelPath();

  // A home as an older version (or a loose umask) left it: world-readable, with a world-readable database.
  const home = tempHome();
  fs.chmodSync(home, 0o755);
  fs.mkdirSync(path.join(home, 'logs'), {mode: 0o755});
  fs.writeFileSync(path.join(home, 'logs', 'old.log'), 'a prompt\n', {mode: 0o644});
  fs.chmodSync(path.join(home, 'logs'), 0o755);
  fs.chmodSync(path.join(home, 'logs', 'old.log'), 0o644);

  hive = await startHive({home, cwd: project, env: {RBEE_TOKEN: token}, args: ['--heartbeat-interval', '300']});
  const spawned = await postJson(`${hive.url}/v1/workers`, {model, type: 'echo'}, {headers: auth});
  t.is(spawned.status, 201, JSON.stringify(spawned.body));
  const id = spawned.body.worker_id as string;
  await waitFor(async () => (await getJson(`${hive!.url}/v1/workers/${id}`, auth)).body.state === 'ready', 30_000, 'the echo worker to be ready');
  const worker = (await getJson(`${hive.url}/v1/workers/${id}`, auth)).body as {url: string; pid: number; model: string};

  // The home and everything in it: owner only.
  t.is((fs.statSync(home).mode & 0o777).toString(8), '700');
  const modes = modesUnder(home);
  for (const name of ['hive.sqlite', 'hive.lock', 'hive.json', path.join('logs', `${id}.log`), path.join('logs', 'old.log')]) {
    t.true(
      modes.some(([file]) => file === name),
      `${name} exists`,
    );
  }
  t.deepEqual(
    modes.filter(([, mode]) => !['600', '700'].includes(mode)),
    [],
    'nothing under the home is open to group or others',
  );

  // The secret the worker holds is in no byte of the database (nor its WAL); its sha256 is.
  const workerEnv = environOf(worker.pid);
  const secret = workerEnv.get('RBEE_WORKER_SECRET');
  t.truthy(secret, 'the worker got its secret by environment');
  t.false(workerEnv.has('RBEE_TOKEN'), 'the API token is not passed to workers');
  for (const file of fs.readdirSync(home).filter(name => name.startsWith('hive.sqlite'))) {
    t.false(fs.readFileSync(path.join(home, file)).includes(secret!), `${file} does not hold the secret`);
  }
  const db = new Database(path.join(home, 'hive.sqlite'), {readonly: true});
  const row = db.prepare('select secret, secret_sha256 from workers where id = ?').get(id) as {secret: string; secret_sha256: string};
  db.close();
  t.deepEqual(row, {secret: '', secret_sha256: createHash('sha256').update(secret!).digest('hex')});

  // The worker's own port: nothing without its key, whatever the route; the hive's key opens it.
  for (const [method, route] of [
    ['GET', '/health'],
    ['GET', '/v1/models'],
    ['POST', '/v1/infer'],
  ] as const) {
    const response = await fetch(`${worker.url}${route}`, {
      method,
      headers: {'content-type': 'application/json'},
      ...(method === 'POST' ? {body: '{"prompt":"x"}'} : {}),
    });
    t.is(response.status, 401, `${method} ${route} without the key`);
  }
  const wrongKey = await postJson(`${worker.url}/v1/infer`, {prompt: 'bees make honey', max_tokens: 2}, {headers: {authorization: `Bearer ${secret}`}});
  t.is(wrongKey.status, 401, 'the heartbeat secret is not the key');
  const keyed = await postJson(`${worker.url}/v1/infer`, {prompt: 'bees make honey', max_tokens: 2}, {headers: await workerAuth(hive.url, id, auth)});
  t.is(InferResponseSchema.parse(keyed.body).text, 'bees make ');
  t.is((await getJson(`${hive.url}/v1/workers/${id}/key`)).status, 401, 'the key is behind the API token');
  const routed = await postJson(`${hive.url}/v1/infer`, {prompt: 'bees make honey', max_tokens: 2, model: worker.model}, {headers: auth});
  t.is(routed.status, 200, 'the hive routes with the key');

  // The plugin's engine: started with its own key (by environment, not argv) and refusing calls without it.
  const [engine] = descendants(worker.pid);
  const engineEnv = environOf(engine!);
  t.false(engineEnv.has('RBEE_WORKER_SECRET'), 'the worker secret is not passed on to engines');
  t.false(engineEnv.has('RBEE_TOKEN'));
  const engineKey = engineEnv.get('ECHO_API_KEY')!;
  t.truthy(engineKey);
  const argv = fs.readFileSync(`/proc/${engine}/cmdline`, 'utf8');
  t.false(argv.includes(engineKey), 'the engine key is not on its command line');
  const enginePort = argv.split('\0')[argv.split('\0').indexOf('--port') + 1];
  t.is((await fetch(`http://127.0.0.1:${enginePort}/stats`)).status, 401);
  t.is((await fetch(`http://127.0.0.1:${enginePort}/stats`, {headers: {authorization: `Bearer ${engineKey}`}})).status, 200);
});
