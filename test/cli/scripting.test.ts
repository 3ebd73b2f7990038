/** The CLI as CI scripts use it: the README's recipe run as written, worker wait, the event stream, completion. */
import {spawn} from 'node:child_process';
import fs from 'node:fs';
import {fileURLToPath} from 'node:url';
import test from 'ava';
import {execa} from 'execa';
import {freePort} from '../../src/http/free-port.js';
import {HiveEventSchema, type HiveEvent} from '../../src/protocol/wire.js';
import {waitFor} from '../helpers/process-tree.js';
import {postJson, rbee, rbeeBin, startHive, tempHome} from '../helpers/rbee-process.js';
import {defaultModelPath} from '../helpers/test-model.js';

const root = fileURLToPath(new URL('../../', import.meta.url));

test.serial("the README's CI recipe runs as written", async t => {
  const readme = fs.readFileSync(`${root}README.md`, 'utf8');
  const recipe = /<!-- ci-recipe[^>]*-->\n```bash\n([\s\S]*?)```/.exec(readme)?.[1];
  t.truthy(recipe, 'the README has the marked recipe');
  const home = tempHome('rbee-ci-recipe-');
  // The recipe assembles the default model into RBEE_HOME; point it at the shared test cache instead.
  fs.mkdirSync(`${home}/models/default`, {recursive: true});
  const model = await defaultModelPath();
  fs.symlinkSync(model, `${home}/models/default/gemma-3-270m-q4_k_m.gguf`);
  fs.copyFileSync(`${model}.sha256`, `${home}/models/default/gemma-3-270m-q4_k_m.gguf.sha256`);
  const run = await execa('bash', ['-c', recipe!], {
    cwd: root,
    reject: false,
    timeout: 240_000,
    all: true,
    env: {...process.env, RBEE_HOME: home, RBEE_CI_PORT: String(await freePort())},
  });
  t.is(run.exitCode, 0, String(run.all).slice(-2_000));
});

test.serial('worker wait, status --watch --json (NDJSON events), and exit codes for scripts', async t => {
  const hive = await startHive({args: ['--heartbeat-interval', '300']});
  const watcher = spawn(process.execPath, [rbeeBin, '--json', 'status', '--watch'], {env: {...process.env, RBEE_HIVE_URL: hive.url}});
  const events: HiveEvent[] = [];
  let buffer = '';
  watcher.stdout.on('data', chunk => {
    buffer += String(chunk);
    const lines = buffer.split('\n');
    buffer = lines.pop()!;
    events.push(...lines.map(line => HiveEventSchema.parse(JSON.parse(line))));
  });
  try {
    await waitFor(() => events.length > 0, 10_000, 'the snapshot');
    t.is(events[0]!.type, 'snapshot');
    const spawned = await postJson(`${hive.url}/v1/workers`, {model: await defaultModelPath(), threads: 1, parallel: 1, context_size: 512});
    const id = spawned.body.worker_id as string;
    const waited = await rbee(['--json', 'worker', 'wait', id, '--state', 'ready', '--timeout', '60'], {hive});
    t.is(waited.exitCode, 0, String(waited.stderr));
    t.is(JSON.parse(String(waited.stdout)).state, 'ready');
    await waitFor(() => events.some(event => event.type === 'heartbeat' && event.worker_id === id), 5_000, 'a heartbeat event');
    t.true(events.some(event => event.type === 'worker' && event.change === 'spawned' && event.worker.worker_id === id));
    const timedOut = await rbee(['worker', 'wait', id, '--state', 'stopped', '--timeout', '1'], {hive});
    t.is(timedOut.exitCode, 5);
    t.regex(String(timedOut.stderr), /still ready after 1 s/);
    await rbee(['worker', 'stop', id], {hive});
    await waitFor(
      () => events.some(event => event.type === 'worker' && event.worker.worker_id === id && event.worker.state === 'stopped'),
      5_000,
      'the stopped event',
    );
    const never = await rbee(['worker', 'wait', id, '--state', 'ready', '--timeout', '30'], {hive});
    t.is(never.exitCode, 1, 'a stopped worker will not become ready: fail at once');
    t.is((await rbee(['worker', 'wait', 'worker-nobody'], {hive})).exitCode, 4);
  } finally {
    watcher.kill();
    await hive.stop();
  }
});

test.serial(
  'RBEE_* variables stand in for flags: RBEE_JSON, RBEE_MODEL, RBEE_DEVICE, RBEE_WORKER_TYPE, RBEE_THREADS; flags win; a bad value names its variable',
  async t => {
    const hive = await startHive();
    try {
      const model = await defaultModelPath();
      const env = {RBEE_JSON: '1', RBEE_MODEL: model, RBEE_DEVICE: 'cpu', RBEE_WORKER_TYPE: 'llamacpp', RBEE_THREADS: '1', RBEE_CONTEXT_SIZE: '512'};
      const planned = await rbee(['worker', 'spawn', '--dry-run'], {hive, env});
      t.is(planned.exitCode, 0, String(planned.stderr));
      t.like(JSON.parse(String(planned.stdout)), {type: 'llamacpp', device: 'cpu', model: 'gemma-3-270m-q4_k_m'});
      const {RBEE_WORKER_TYPE: _, ...untyped} = env;
      const defaulted = await rbee(['worker', 'spawn', '--dry-run'], {hive, env: untyped});
      t.is(JSON.parse(String(defaulted.stdout)).type, 'llamacpp', 'no type named: the fastest worker type on the CPU (llama.cpp, by the declared ranks)');
      const emptyType = await rbee(['worker', 'spawn', '--dry-run'], {hive, env: {...env, RBEE_WORKER_TYPE: ''}});
      t.is(JSON.parse(String(emptyType.stdout)).type, 'llamacpp', 'RBEE_WORKER_TYPE set to nothing: the hive chooses');
      const flagWins = await rbee(['worker', 'spawn', '--dry-run', '--type', 'nonesuch'], {hive, env});
      t.is(flagWins.exitCode, 2, 'a request the hive refuses as invalid is a usage error');
      t.regex(JSON.parse(String(flagWins.stdout)).error.message, /unknown worker type "nonesuch"/, 'RBEE_JSON makes errors JSON too');
      const bad = await rbee(['worker', 'spawn', '--dry-run'], {hive, env: {...env, RBEE_THREADS: 'many'}});
      t.is(bad.exitCode, 2);
      t.regex(String(bad.stderr), /RBEE_THREADS/);
      const status = await rbee(['status'], {hive, env: {RBEE_JSON: 'yes'}});
      t.is(JSON.parse(String(status.stdout)).url, hive.url);
      t.deepEqual(JSON.parse(String(status.stdout)).groups, [], 'worker groups are part of the status');
      const human = await rbee(['status'], {hive, env: {RBEE_JSON: '0'}});
      t.throws(() => JSON.parse(String(human.stdout)), undefined, 'RBEE_JSON=0 is off');
    } finally {
      await hive.stop();
    }
  },
);

test.serial('status --watch gives up on a hung hive (SIGSTOP): exit code 5 once three keep-alives are missed', async t => {
  const hive = await startHive();
  try {
    const watcher = execa(process.execPath, [rbeeBin, '--json', 'status', '--watch'], {
      reject: false,
      timeout: 30_000,
      env: {...process.env, RBEE_HIVE_URL: hive.url},
    });
    await new Promise(resolve => setTimeout(resolve, 3_000));
    process.kill(hive.pid, 'SIGSTOP');
    const stoppedAt = Date.now();
    const result = await watcher;
    const waited = Date.now() - stoppedAt;
    t.is(result.exitCode, 5, String(result.stderr));
    t.regex(String(result.stderr), /sent nothing for 6 s, not even a keep-alive/);
    t.true(waited < 15_000, `gave up ${waited} ms after the hive hung`);
  } finally {
    process.kill(hive.pid, 'SIGCONT');
    await hive.stop();
  }
});

test('completion scripts complete commands and flags from the command tree', async t => {
  const script = String((await rbee(['completion', 'bash'])).stdout);
  const complete = async (...words: string[]) => {
    const run = await execa('bash', [
      '-c',
      `${script}\nCOMP_WORDS=(${words.map(word => `'${word}'`).join(' ')}); COMP_CWORD=${words.length - 1}; _rbee_complete; echo "\${COMPREPLY[*]}"`,
    ]);
    return run.stdout.split(' ');
  };
  t.deepEqual(await complete('rbee', 'wo'), ['worker', 'workflow']);
  t.true((await complete('rbee', 'worker', '')).includes('spawn'));
  t.deepEqual(await complete('rbee', 'worker', 'spawn', '--mo'), ['--model']);
  t.deepEqual(await complete('rbee', 'worker', 'spawn', '--model', 'default', '--dev'), ['--device']);
  const fish = String((await rbee(['completion', 'fish'])).stdout);
  t.regex(fish, /complete -c rbee -n '__fish_seen_subcommand_from spawn' -l model/);
  t.regex(String((await rbee(['completion', 'zsh'])).stdout), /bashcompinit/);
  t.is((await rbee(['completion', 'powershell'])).exitCode, 2);
});
