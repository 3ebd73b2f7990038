/**
 * The hive's links to its workers (src/hive/worker-links.ts) with real processes: a worker the hive
 * starts serves a Unix socket in RBEE_HOME/links, the hive's generation requests come by it (the
 * worker's trace marks say which way each came), requests to the worker's port still come by HTTP,
 * and a link that is gone sends the hive's requests over HTTP without the client noticing. The
 * engine is the STAND-IN for trtllm-serve (test/fixtures/standins/trtllm-standin.mjs), on a GPU a
 * STAND-IN nvidia-smi shows, so no model is computed.
 */
import fs from 'node:fs';
import path from 'node:path';
import test from 'ava';
import {fakeNvidiaSmi} from '../helpers/fake-nvidia-smi.js';
import {postJson, postStream, rbee, startHive, workerAuth, type RunningHive} from '../helpers/rbee-process.js';
import {spawnStandinWorker, standinProject} from '../helpers/trtllm-standin.js';
import {waitFor} from '../helpers/process-tree.js';

const project = standinProject('rbee-worker-links-');
const nvidiaSmi = fakeNvidiaSmi({gpus: [{name: 'NVIDIA H100 80GB HBM3', totalMiB: 81_559, usedMiB: 500}]});

let hive: RunningHive;

test.before(async () => {
  hive = await startHive({cwd: project, env: {RBEE_NVIDIA_SMI: nvidiaSmi, RBEE_STARTUP_TRACE: '1', RBEE_STANDIN_TOKEN_MS: '1'}});
});

test.after.always(async () => {
  await hive?.stop();
});

/** How many requests the worker took by its link so far (its log's trace marks). */
function byLink(workerId: string): number {
  const log = fs.readFileSync(path.join(hive.home, 'logs', `${workerId}.log`), 'utf8');
  return log.split('\n').filter(line => line.startsWith('[trace]') && line.endsWith(`${workerId} request came by the hive link`)).length;
}

test.serial("the hive's requests come by the worker's link, private to its owner; the worker's port still takes HTTP", async t => {
  const worker = await spawnStandinWorker(hive);
  const links = path.join(hive.home, 'links');
  const socket = path.join(links, `${worker.worker_id}.sock`);
  t.is(fs.statSync(links).mode & 0o777, 0o700);
  t.true(fs.statSync(socket).isSocket());
  t.is(fs.statSync(socket).mode & 0o777, 0o600);

  const streamed = await postStream(`${hive.url}/v1/completions`, {model: 'gemma-3-270m-q4_k_m', prompt: 'hi', max_tokens: 3, stream: true});
  t.is(streamed.status, 200);
  t.is(streamed.events.at(-1), '[DONE]');
  const whole = await postJson(`${hive.url}/v1/infer`, {prompt: 'hi', max_tokens: 3});
  t.is(whole.status, 200, JSON.stringify(whole.body));
  t.is(whole.body.tokens_generated, 3);
  await waitFor(() => byLink(worker.worker_id) === 2, 5_000, 'two requests by the link');

  const direct = await postJson(`${worker.url}/v1/infer`, {prompt: 'hi', max_tokens: 2}, {headers: await workerAuth(hive.url, worker.worker_id)});
  t.is(direct.status, 200);
  t.is(byLink(worker.worker_id), 2, 'a request to the port came by HTTP');
  // The next test's requests must go to its own worker.
  t.is((await rbee(['worker', 'stop', worker.worker_id], {hive})).exitCode, 0);
});

test.serial("a link that is gone: the hive's requests go over HTTP and are answered as before", async t => {
  const worker = await spawnStandinWorker(hive);
  const before = byLink(worker.worker_id);
  fs.rmSync(path.join(hive.home, 'links', `${worker.worker_id}.sock`));
  const streamed = await postStream(`${hive.url}/v1/infer`, {prompt: 'hi', max_tokens: 3, stream: true});
  t.is(streamed.status, 200);
  t.is(JSON.parse(streamed.events.at(-1)!).type, 'done');
  t.is(byLink(worker.worker_id), before);
});
