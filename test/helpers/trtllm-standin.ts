/**
 * Workers of the tensorrt-llm adapter on the STAND-IN for trtllm-serve (test/fixtures/standins/
 * trtllm-standin.mjs, not rbee's code): a project folder whose rbee.config.json sets it as the
 * adapter's command, and a worker spawned through a hive on `cuda:0` (the hive is shown a GPU by
 * a stand-in nvidia-smi: the adapter runs on NVIDIA GPUs only). No model is computed.
 */
import fs from 'node:fs';
import path from 'node:path';
import {fileURLToPath} from 'node:url';
import {rbee, tempHome, type RunningHive} from './rbee-process.js';
import {defaultModelPath} from './test-model.js';

export const trtllmStandin = fileURLToPath(new URL('../fixtures/standins/trtllm-standin.mjs', import.meta.url));

/** A project folder (a hive's cwd) whose config runs the stand-in, with `args` after the adapter's own. */
export function standinProject(prefix: string, args: string[] = []): string {
  // `command` is spawned directly: the stand-in runs through its shebang.
  fs.chmodSync(trtllmStandin, 0o755);
  const project = tempHome(prefix);
  const type = {command: trtllmStandin, ...(args.length === 0 ? {} : {args})};
  fs.writeFileSync(path.join(project, 'rbee.config.json'), JSON.stringify({types: {'tensorrt-llm': type}}));
  return project;
}

export type StandinWorker = {worker_id: string; url: string; pid: number; model: string};

/** Spawns a stand-in worker on the default model and waits for it to be ready; throws with the CLI's stderr if it is not. */
export async function spawnStandinWorker(hive: RunningHive, extra: string[] = []): Promise<StandinWorker> {
  const spawned = await rbee(
    [
      '--json',
      'worker',
      'spawn',
      '--type',
      'tensorrt-llm',
      '--device',
      'cuda:0',
      '--model',
      await defaultModelPath(),
      '--restart',
      'never',
      '--wait',
      '--timeout',
      '60',
      ...extra,
    ],
    {hive},
  );
  if (spawned.exitCode !== 0) {
    throw new Error(`spawn failed (exit ${spawned.exitCode}): ${String(spawned.stderr)}`);
  }
  return JSON.parse(String(spawned.stdout)) as StandinWorker;
}
