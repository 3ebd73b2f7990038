/**
 * Overload through the hive: 1,000 concurrent requests at one worker that runs 1 and queues 8.
 * Each must settle as an answer or a 503 with Retry-After (back-pressure, never a hang, a 5xx of
 * another kind or a lost request), and both the hive and the worker must serve normally afterwards.
 */
import http from 'node:http';
import test from 'ava';
import {ErrorBodySchema, InferResponseSchema, WorkerInfoSchema, type WorkerInfo} from '../../src/protocol/wire.js';
import {isAlive, waitFor} from '../helpers/process-tree.js';
import {getJson, postJson, startHive, workerAuth, type RunningHive} from '../helpers/rbee-process.js';
import {defaultModelPath} from '../helpers/test-model.js';

const concurrent = 1_000;
const request = {prompt: 'Hi', max_tokens: 1, temperature: 0};

let hive: RunningHive;
let worker: WorkerInfo;
// undici is not importable as a package here; node:http with enough sockets that all 1,000 are really in flight at once.
const agent = new http.Agent({keepAlive: true, maxSockets: concurrent});

test.before(async () => {
  const model = await defaultModelPath();
  // The test is about admission (answers or 503s, none lost), not hang detection: on a loaded machine a
  // worker swamped by 1,000 requests may take longer than the default 2 s to answer its /health.
  hive = await startHive({args: ['--worker-timeout', '15000']});
  const spawned = await postJson(`${hive.url}/v1/workers`, {model, threads: 1, parallel: 1, max_queue: 8, context_size: 512});
  if (spawned.status !== 201) {
    throw new Error(`spawn answered ${spawned.status}: ${JSON.stringify(spawned.body)}`);
  }
  const id = (spawned.body as WorkerInfo).worker_id;
  await waitFor(
    async () => {
      const info = WorkerInfoSchema.parse((await getJson(`${hive.url}/v1/workers/${id}`)).body);
      if (info.state === 'failed' || info.state === 'stopped') {
        throw new Error(`worker ${id} ${info.state}: ${info.reason}`);
      }
      worker = info;
      return info.state === 'ready';
    },
    120_000,
    `worker ${id} to be ready`,
  );
});

test.after.always(async () => {
  agent.destroy();
  await hive?.stop();
  // The hive stops its worker; should it not have, the worker's process group must not outlive the test.
  if (worker?.pid !== null && worker?.pid !== undefined && isAlive(worker.pid)) {
    try {
      process.kill(-worker.pid, 'SIGKILL');
    } catch {
      // already gone
    }
  }
});

type Settled = {status: number; retryAfter: string | undefined; text: string} | {error: string};

function infer(url: string, deadline: number): Promise<Settled> {
  const target = new URL('/v1/infer', url);
  const body = JSON.stringify(request);
  return new Promise(resolve => {
    const outgoing = http.request(
      {
        host: target.hostname,
        port: target.port,
        path: target.pathname,
        method: 'POST',
        agent,
        headers: {'content-type': 'application/json', 'content-length': Buffer.byteLength(body)},
      },
      response => {
        const chunks: Buffer[] = [];
        response.on('data', chunk => chunks.push(chunk as Buffer));
        response.on('end', () =>
          resolve({status: response.statusCode ?? 0, retryAfter: response.headers['retry-after'], text: Buffer.concat(chunks).toString('utf8')}),
        );
        response.on('error', error => resolve({error: error.message}));
      },
    );
    // One deadline for the whole burst: a request still open by then has hung.
    outgoing.setTimeout(Math.max(1, deadline - Date.now()), () => outgoing.destroy(new Error('hung: no answer before the deadline')));
    outgoing.on('error', error => resolve({error: error.message}));
    outgoing.end(body);
  });
}

function parse(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return text;
  }
}

test.serial(`${concurrent} concurrent requests: each an answer or a 503 with Retry-After, none lost`, async t => {
  t.timeout(110_000);
  const began = Date.now();
  const settled = await Promise.all(Array.from({length: concurrent}, () => infer(hive.url, began + 90_000)));
  const wallMs = Date.now() - began;

  let answered = 0;
  let refused = 0;
  const problems: string[] = [];
  const other = new Map<string, number>();
  for (const result of settled) {
    if ('error' in result) {
      other.set(`error: ${result.error}`, (other.get(`error: ${result.error}`) ?? 0) + 1);
      continue;
    }
    const body = parse(result.text);
    if (result.status === 200 && InferResponseSchema.safeParse(body).success) {
      answered++;
    } else if (result.status === 503 && result.retryAfter !== undefined && ErrorBodySchema.safeParse(body).success) {
      refused++;
    } else {
      other.set(`${result.status}`, (other.get(`${result.status}`) ?? 0) + 1);
      if (problems.length < 5) {
        problems.push(`${result.status} retry-after=${result.retryAfter} ${result.text.slice(0, 200)}`);
      }
    }
  }
  t.log(`${concurrent} requests in ${wallMs} ms: ${answered} answered (200), ${refused} refused (503 + Retry-After)`);
  for (const [what, count] of other) {
    t.log(`  unexpected ${what}: ${count}`);
  }
  t.deepEqual(problems, []);
  t.deepEqual([...other.keys()], [], 'every request settled as 200 or 503');
  t.is(answered + refused, concurrent, 'none lost');
  t.true(answered >= 1, 'at least one answered');
  t.true(refused >= 1, 'at least one refused: the queue bound held');
});

test.serial('afterwards the hive and the worker still serve a normal request', async t => {
  t.is((await getJson(`${hive.url}/health`)).status, 200);
  t.true(isAlive(hive.pid));
  const info = WorkerInfoSchema.parse((await getJson(`${hive.url}/v1/workers/${worker.worker_id}`)).body);
  // 'busy' if its last heartbeat fell inside the burst: still serving either way.
  t.true(info.state === 'ready' || info.state === 'busy', info.state);
  t.is(info.pid, worker.pid, 'the same worker process: it was not restarted');
  t.is(info.restarts, 0);
  // The worker's own port answers only with its key (asked of the hive, as a client of the hive would).
  for (const [base, headers] of [
    [hive.url, {}],
    [worker.url, await workerAuth(hive.url, worker.worker_id)],
  ] as const) {
    const answer = await postJson(`${base}/v1/infer`, {...request, max_tokens: 4}, {headers});
    t.is(answer.status, 200, `${base}: ${JSON.stringify(answer.body)}`);
    t.true(InferResponseSchema.parse(answer.body).tokens_generated >= 1);
  }
});
