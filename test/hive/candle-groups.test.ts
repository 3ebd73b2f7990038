/**
 * Tensor-parallel candle groups on the CPU: Gemma 3 270M split over 2 and 4 rank processes (its 4
 * query heads, 1 KV head replicated, 2048 feed-forward columns and 262144 vocabulary rows all split
 * at 2 and 4; 8 ranks would cut heads apart). The group's greedy text equals one process computing
 * the same blocked sums (the engine's `tensorParallel.blocks` reference, see native/src/model/shard);
 * a shard killed mid-stream fails the request at once and the group comes back whole; a model that
 * does not split is refused with a 400 naming the tensor and its shape.
 */
import fs from 'node:fs';
import path from 'node:path';
import test from 'ava';
import {loadNativeModel, nativeBindingAvailable} from '../../src/native/index.js';
import {
  GroupInfoSchema,
  GroupListSchema,
  HeartbeatSchema,
  InferResponseSchema,
  InferStreamEventSchema,
  WorkerInfoSchema,
  type GroupInfo,
} from '../../src/protocol/wire.js';
import {descendants, isAlive, waitFor} from '../helpers/process-tree.js';
import {getJson, postJson, rbee, startHive, tempHome, workerAuth, type RunningHive} from '../helpers/rbee-process.js';
import {defaultModelPath} from '../helpers/test-model.js';
import {writeTinyGguf} from '../native/tiny-gguf.js';

// In CI the engine is built before the tests: there a missing binding is a failure, not a skip.
const serial = !(await nativeBindingAvailable()) && process.env.CI !== 'true' ? test.serial.skip : test.serial;
const hives: RunningHive[] = [];
const prompt = 'The capital of France is';
const maxTokens = 24;

test.after.always(async () => {
  await Promise.all(hives.map(hive => hive.stop()));
});

async function hive(): Promise<RunningHive> {
  const started = await startHive({args: ['--heartbeat-interval', '300', '--orphan-timeout', '4000']});
  hives.push(started);
  return started;
}

async function spawnGroup(target: RunningHive, ranks: number, restart = 'never'): Promise<GroupInfo> {
  const devices = Array.from({length: ranks}, () => 'cpu').join(',');
  const args = ['--json', 'worker', 'spawn-group', '--type', 'candle', '--model', await defaultModelPath(), '--devices', devices];
  const spawned = await rbee([...args, '--threads', '1', '--context-size', '512', '--restart', restart, '--wait', '--timeout', '180'], {hive: target});
  if (spawned.exitCode !== 0) {
    throw new Error(`spawn-group failed: ${String(spawned.stderr)}`);
  }
  return GroupInfoSchema.parse(JSON.parse(String(spawned.stdout)));
}

async function group(target: RunningHive, id: string): Promise<GroupInfo> {
  return GroupInfoSchema.parse((await getJson(`${target.url}/v1/groups/${id}`)).body);
}

async function worker(target: RunningHive, id: string) {
  return WorkerInfoSchema.parse((await getJson(`${target.url}/v1/workers/${id}`)).body);
}

/** One process, the same blocked reduction order as a group of `ranks` (and the plain ggml path, for the log). */
async function reference(ranks: number | null): Promise<string> {
  const model = await loadNativeModel({
    path: await defaultModelPath(),
    contextSize: 512,
    threads: 1,
    ...(ranks === null ? {} : {tensorParallel: {blocks: ranks}}),
  });
  try {
    return (await model.generate({prompt, maxTokens})).text;
  } finally {
    model.close();
  }
}

async function groupAnswer(target: RunningHive): Promise<string> {
  const routed = await postJson(`${target.url}/v1/infer`, {model: 'gemma-3-270m-q4_k_m', prompt, max_tokens: maxTokens, temperature: 0});
  if (routed.status !== 200) {
    throw new Error(`infer: ${routed.status} ${JSON.stringify(routed.body)}`);
  }
  return InferResponseSchema.parse(routed.body).text;
}

for (const ranks of [2, 4]) {
  serial(`a ${ranks}-rank candle group answers greedy token for token as one process with ${ranks} blocks`, async t => {
    const target = await hive();
    const spawned = await spawnGroup(target, ranks);
    t.is(spawned.health, 'healthy');
    t.is(spawned.workers.length, ranks - 1);
    const members = await Promise.all([spawned.coordinator.worker_id, ...spawned.workers.map(shard => shard.worker_id)].map(id => worker(target, id)));
    t.deepEqual(
      members.map(member => member.role),
      ['coordinator', ...Array.from({length: ranks - 1}, () => 'shard')],
    );
    const answer = await groupAnswer(target);
    t.is(answer, await reference(ranks), 'identical to the single-process reference');

    // Heartbeats as any group's: the coordinator reports its shards, each shard its place.
    const coordinatorId = spawned.coordinator.worker_id;
    await waitFor(async () => (await worker(target, coordinatorId)).last_heartbeat?.shard_workers?.length === ranks - 1, 5_000, 'a heartbeat with the shards');
    const beat = HeartbeatSchema.parse((await worker(target, coordinatorId)).last_heartbeat);
    t.is(beat.role, 'coordinator');
    t.is(beat.group_health, 'healthy');
    t.deepEqual(
      beat.devices,
      Array.from({length: ranks}, () => 'cpu'),
    );
    const shardBeat = HeartbeatSchema.parse((await worker(target, spawned.workers[0]!.worker_id)).last_heartbeat);
    t.is(shardBeat.role, 'shard');
    t.is(shardBeat.coordinator, coordinatorId);
    t.is(shardBeat.group_id, spawned.group_id);
    // Its own memory (the coordinator sums its group's): the process's resident set; no GPU here.
    t.true((shardBeat.ram_used ?? 0) > 0);
    t.is(shardBeat.vram_used, 0);
    const toShard = await postJson(`${members[1]!.url}/v1/infer`, {prompt: 'x', max_tokens: 2}, {headers: await workerAuth(target.url, members[1]!.worker_id)});
    t.true(toShard.status >= 400, 'a shard serves no requests of its own');
    const plain = await reference(null);
    t.log(`${ranks} ranks: ${JSON.stringify(answer)}; plain ggml path ${answer === plain ? 'agrees' : `differs: ${JSON.stringify(plain)}`}`);

    const tree = members.flatMap(member => [member.pid!, ...descendants(member.pid!)]);
    const stopped = await rbee(['--json', 'worker', 'stop', spawned.group_id], {hive: target});
    t.is(GroupInfoSchema.parse(JSON.parse(String(stopped.stdout))).health, 'stopped');
    t.true(
      tree.every(pid => !isAlive(pid)),
      'every rank gone when the stop returns',
    );
    t.deepEqual(
      (await Promise.all(members.map(member => worker(target, member.worker_id)))).map(member => member.state),
      members.map(() => 'stopped'),
      'stopped, not failed: a shard whose coordinator closed the group is not a failure',
    );
  });
}

serial('a shard killed mid-stream: the client gets an error within 1 s, no process is left, the group comes back whole', async t => {
  const target = await hive();
  const spawned = await spawnGroup(target, 2, 'on-failure');
  const ids = [spawned.coordinator.worker_id, spawned.workers[0]!.worker_id];
  const before = await Promise.all(ids.map(id => worker(target, id)));
  const tree = before.flatMap(member => [member.pid!, ...descendants(member.pid!)]);

  const response = await fetch(`${target.url}/v1/infer`, {
    method: 'POST',
    headers: {'content-type': 'application/json'},
    body: JSON.stringify({prompt, max_tokens: 400, temperature: 0, stream: true}),
    signal: AbortSignal.timeout(60_000),
  });
  t.is(response.status, 200);
  const reader = response.body!.getReader();
  const decoder = new TextDecoder();
  let buffered = '';
  let killedAt = 0;
  let endedAt = 0;
  const events: Array<ReturnType<typeof InferStreamEventSchema.parse>> = [];
  for (;;) {
    const {value, done} = await reader.read();
    if (done) {
      endedAt = Date.now();
      break;
    }
    buffered += decoder.decode(value, {stream: true});
    let cut: number;
    while ((cut = buffered.indexOf('\n\n')) >= 0) {
      const line = buffered
        .slice(0, cut)
        .split('\n')
        .find(part => part.startsWith('data: '));
      buffered = buffered.slice(cut + 2);
      if (line !== undefined) {
        events.push(InferStreamEventSchema.parse(JSON.parse(line.slice(6))));
      }
    }
    if (killedAt === 0 && events.filter(event => event.type === 'token').length >= 2) {
      process.kill(before[1]!.pid!, 'SIGKILL');
      killedAt = Date.now();
    }
    if (events.at(-1)?.type === 'error' || events.at(-1)?.type === 'done') {
      endedAt = Date.now();
      break;
    }
  }
  await waitFor(async () => (await group(target, spawned.group_id)).health !== 'healthy', 5_000, 'the group to leave healthy');
  const judgedAt = Date.now();
  const last = events.at(-1);
  t.is(last?.type, 'error', `the stream ends in an error, not a made-up answer: ${JSON.stringify(last)}`);
  t.log(`the client saw the error ${endedAt - killedAt} ms after the shard was killed: ${last?.type === 'error' ? last.error.message : ''}`);
  t.true(endedAt - killedAt < 1_000, `${endedAt - killedAt} ms`);
  t.log(`the hive no longer read the group healthy ${judgedAt - killedAt} ms after the kill (at most; polled)`);
  t.true(judgedAt - killedAt < 1_500, 'the group is judged at once, not after missed heartbeats');

  await waitFor(() => tree.every(pid => !isAlive(pid)), 10_000, 'every old member process to exit');
  await waitFor(async () => (await group(target, spawned.group_id)).restarts === 1, 20_000, 'the group to be spawned again');
  await waitFor(async () => (await group(target, spawned.group_id)).health === 'healthy', 120_000, 'the restarted group to be healthy');
  const after = await Promise.all(ids.map(id => worker(target, id)));
  t.true(
    after.every((member, index) => member.pid !== before[index]!.pid),
    'new processes under the same ids',
  );
  t.is(await groupAnswer(target), await reference(2), 'the restarted group answers as before');
  await rbee(['--json', 'worker', 'stop', spawned.group_id], {hive: target});
});

serial('a model that does not split over the ranks is refused with a 400 naming the tensor and its shape, nothing started', async t => {
  const model = await defaultModelPath();
  // The hive's own "default" is the shared test model (linked, not downloaded): named so, a candle
  // group's model is resolved when the group is planned, and checked then.
  const home = tempHome();
  t.teardown(() => fs.rmSync(home, {recursive: true, force: true}));
  fs.mkdirSync(path.join(home, 'models', 'default'), {recursive: true, mode: 0o700});
  for (const file of [model, `${model}.sha256`]) {
    fs.symlinkSync(file, path.join(home, 'models', 'default', path.basename(file)));
  }
  const target = await startHive({home, args: ['--heartbeat-interval', '300']});
  hives.push(target);
  // Gemma 3 270M has 4 query heads: 3 ranks cannot hold whole heads; 8 cannot either. By path, or
  // by name: a candle group's model is resolved when the group is planned, so it is checked then.
  for (const [ranks, reference] of [
    [3, model],
    [8, 'default'],
  ] as const) {
    const answer = await postJson(`${target.url}/v1/groups`, {model: reference, type: 'candle', devices: Array.from({length: ranks}, () => 'cpu')});
    t.is(answer.status, 400, JSON.stringify(answer.body));
    const message = String((answer.body as {error?: {message?: string}}).error?.message);
    t.regex(message, /^devices: the model cannot be split over \d ranks: .*blk\.0\.attn_q\.weight of shape \[1024, 640\] \(Q5_0\): 4 query heads/);
  }
  // 24 query heads split over 3 ranks, but 8 KV heads cannot be divided over 3.
  const kvHeads = writeTinyGguf('qwen2', 7, {nHead: 24, nHeadKv: 8});
  t.teardown(() => fs.rmSync(path.dirname(kvHeads), {recursive: true, force: true}));
  const answer = await postJson(`${target.url}/v1/groups`, {model: kvHeads, type: 'candle', devices: ['cpu', 'cpu', 'cpu']});
  t.is(answer.status, 400, JSON.stringify(answer.body));
  t.regex(
    String((answer.body as {error?: {message?: string}}).error?.message),
    /blk\.0\.attn_k\.weight of shape \[512, 256\] \(Q8_0\): 8 KV heads cannot be divided over 3 ranks/,
  );
  // CPU and GPU ranks cannot be mixed (on a machine without a GPU, cuda:0 may be refused first, as unknown).
  const mixed = await postJson(`${target.url}/v1/groups`, {model, type: 'candle', devices: ['cpu', 'cuda:0']});
  t.is(mixed.status, 400, JSON.stringify(mixed.body));
  t.regex(String((mixed.body as {error?: {message?: string}}).error?.message), /cuda:0/);
  const listed = GroupListSchema.parse((await getJson(`${target.url}/v1/groups?all=1`)).body);
  t.deepEqual(listed.groups, [], 'nothing recorded');
  const workers = (await getJson(`${target.url}/v1/workers?all=1`)).body as {workers: unknown[]};
  t.deepEqual(workers.workers, []);
});
