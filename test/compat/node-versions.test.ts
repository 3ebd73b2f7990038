/**
 * rbee on the newer Node majors: the files `npm pack` would publish from this checkout, with
 * production dependencies installed by that Node (scripts/node-runtimes.ts prepares both), run a
 * hive, a candle worker (the napi addon) and a llama.cpp worker on the default model, and answer
 * a prompt through each. Node 20 runs every other test.
 */
import {execFileSync} from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import {fileURLToPath} from 'node:url';
import test, {type ExecutionContext} from 'ava';
import {nodeRuntime, nodeRuntimeReady, nodeVersions, type NodeRuntime} from '../../scripts/node-runtimes.js';
import {rbee, startHive, tempHome, type CliRuntime, type RunningHive} from '../helpers/rbee-process.js';
import {defaultModelPath} from '../helpers/test-model.js';

const repoRoot = fileURLToPath(new URL('../..', import.meta.url));

/** The checkout's published files (as `npm pack` lists them) in a folder of their own, beside that Node's dependencies. */
function installedCopy(runtime: NodeRuntime): string {
  const listing = JSON.parse(execFileSync('npm', ['pack', '--dry-run', '--json', '--ignore-scripts'], {cwd: repoRoot, encoding: 'utf8'})) as Array<{
    files: Array<{path: string}>;
  }>;
  const files = listing[0]!.files.map(file => file.path);
  if (!files.some(file => /^native\/.*\.node$/.test(file))) {
    throw new Error('no native/*.node in the published files: build the candle engine first (npm run build:native)');
  }
  const app = fs.mkdtempSync(path.join(os.tmpdir(), `rbee-node${runtime.version}-`));
  for (const file of files) {
    fs.mkdirSync(path.dirname(path.join(app, file)), {recursive: true});
    fs.copyFileSync(path.join(repoRoot, file), path.join(app, file));
  }
  fs.symlinkSync(path.join(runtime.depsDir, 'node_modules'), path.join(app, 'node_modules'));
  return app;
}

async function spawnAndAsk(t: ExecutionContext, hive: RunningHive, cli: CliRuntime, type: string): Promise<void> {
  const spawned = await rbee(
    ['--json', 'worker', 'spawn', '--model', await defaultModelPath(), '--type', type, '--threads', '1', '--parallel', '1', '--context-size', '512', '--wait'],
    {hive, ...cli},
  );
  t.is(spawned.exitCode, 0, `${type} spawn: ${String(spawned.stderr)}`);
  const worker = JSON.parse(String(spawned.stdout)) as {worker_id: string};
  const answer = await rbee(['infer', '--max-tokens', '4', '--temperature', '0', 'The capital of France is'], {hive, ...cli});
  t.is(answer.exitCode, 0, `${type} infer: ${String(answer.stderr)}`);
  t.regex(String(answer.stdout), /\S/, `${type} answered some text`);
  const stopped = await rbee(['--json', 'worker', 'stop', worker.worker_id], {hive, ...cli});
  t.is(stopped.exitCode, 0, `${type} stop: ${String(stopped.stderr)}`);
}

for (const version of nodeVersions) {
  const runtime = nodeRuntime(version);
  // CI prepares every runtime before the tests (npm test): a missing one there is a failure, not a skip.
  const register = nodeRuntimeReady(runtime) || process.env.CI === 'true' ? test.serial : test.serial.skip;
  register(`Node ${version}: the published files run a hive, a candle and a llama.cpp worker, and answer`, async t => {
    t.true(nodeRuntimeReady(runtime), `Node ${version} is not prepared: node --import tsx scripts/node-runtimes.ts`);
    const app = installedCopy(runtime);
    const home = tempHome();
    t.teardown(() => {
      fs.rmSync(app, {recursive: true, force: true});
      fs.rmSync(home, {recursive: true, force: true});
    });
    const cli: CliRuntime = {node: runtime.node, bin: path.join(app, 'bin', 'rbee.js')};
    const help = await rbee(['--version'], cli);
    t.is(help.exitCode, 0, String(help.stderr));
    const hive = await startHive({home, ...cli});
    t.teardown(() => hive.stop());
    t.is(fs.realpathSync(`/proc/${hive.pid}/exe`), fs.realpathSync(runtime.node), `the hive runs on Node ${version}`);
    const status = await rbee(['--json', 'status'], {hive, ...cli});
    t.is(status.exitCode, 0, String(status.stderr));
    await spawnAndAsk(t, hive, cli, 'candle');
    await spawnAndAsk(t, hive, cli, 'llamacpp');
    t.is(await hive.stop(), 0, 'the hive exits cleanly');
  });
}
