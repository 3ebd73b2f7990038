/**
 * Continuous batching on a candle worker (`--parallel 4`, the ggml CPU path, the real Gemma 3
 * 270M): four concurrent greedy requests each get exactly the text they get alone, in well under
 * four times the time of one; the heartbeat counts the streams in the batch and the requests
 * waiting; a client that goes away mid-stream frees its slot for a fifth request at once.
 */
import test from 'ava';
import {HeartbeatSchema, InferResponseSchema, type Heartbeat} from '../../src/protocol/wire.js';
import {isAlive, waitFor} from '../helpers/process-tree.js';
import {getJson, postJson, rbee, startHive, tempHome, workerAuth, type RunningHive} from '../helpers/rbee-process.js';
import {defaultModelPath} from '../helpers/test-model.js';
import {nativeTest} from './native-helpers.js';

const {serial} = await nativeTest();
let hive: RunningHive | undefined;
let worker: {worker_id: string; url: string; pid: number} | undefined;
let auth: Record<string, string> = {};

test.after.always(async () => {
  if (worker !== undefined && hive !== undefined) {
    await rbee(['--json', 'worker', 'stop', worker.worker_id], {hive});
  }
  await hive?.stop();
});

/** Greedy completions of these run to max_tokens: none ends early on its own. */
const prompts = ['1, 2, 3, 4, 5,', 'Count to one thousand: 1 2 3', 'A list of numbers: 10, 20, 30,', 'The alphabet: a b c d'];

async function startWorker(): Promise<{worker_id: string; url: string; pid: number}> {
  if (worker !== undefined) {
    return worker;
  }
  // Fast heartbeats to see the batch in them; 20 of them (4 s) before either side gives up on the other, on a loaded machine.
  hive = await startHive({cwd: tempHome('rbee-candle-batch-'), args: ['--heartbeat-interval', '200', '--missed-heartbeats', '20']});
  const model = await defaultModelPath();
  const spawned = await rbee(
    ['--json', 'worker', 'spawn', '--type', 'candle', '--model', model, '--threads', '2', '--parallel', '4', '--context-size', '512', '--restart', 'never', '--wait', '--timeout', '120'],
    {hive},
  );
  if (spawned.exitCode !== 0) {
    throw new Error(`worker spawn failed: ${String(spawned.stderr)}`);
  }
  worker = JSON.parse(String(spawned.stdout)) as {worker_id: string; url: string; pid: number};
  auth = await workerAuth(hive.url, worker.worker_id);
  return worker;
}

async function infer(prompt: string, maxTokens: number): Promise<{text: string; ms: number}> {
  const began = performance.now();
  const answer = await postJson(`${worker!.url}/v1/infer`, {prompt, max_tokens: maxTokens, temperature: 0}, {headers: auth});
  if (answer.status !== 200) {
    // The hive's record of the worker says why it stopped taking requests (a missed heartbeat, say).
    const record = (await getJson(`${hive!.url}/v1/workers/${worker!.worker_id}`)).body as {state?: string; reason?: string | null; restarts?: number};
    throw new Error(`infer answered ${answer.status}: ${JSON.stringify(answer.body)}; the hive has the worker ${JSON.stringify({state: record.state, reason: record.reason, restarts: record.restarts})}`);
  }
  return {text: InferResponseSchema.parse(answer.body).text, ms: performance.now() - began};
}

async function lastHeartbeat(): Promise<Heartbeat | null> {
  const body = (await getJson(`${hive!.url}/v1/workers/${worker!.worker_id}`)).body as {last_heartbeat?: unknown};
  return body.last_heartbeat === undefined || body.last_heartbeat === null ? null : HeartbeatSchema.parse(body.last_heartbeat);
}

/** A streamed request read as it arrives: how many token events so far, and whether it ended. */
function openStream(prompt: string, maxTokens: number) {
  const controller = new AbortController();
  const state = {tokens: 0, done: false, text: ''};
  const finished = (async () => {
    const response = await fetch(`${worker!.url}/v1/infer`, {
      method: 'POST',
      headers: {'content-type': 'application/json', ...auth},
      body: JSON.stringify({prompt, max_tokens: maxTokens, temperature: 0, stream: true}),
      signal: AbortSignal.any([controller.signal, AbortSignal.timeout(180_000)]),
    });
    const decoder = new TextDecoder();
    let buffered = '';
    for await (const chunk of response.body!) {
      buffered += decoder.decode(chunk as Uint8Array, {stream: true});
      const blocks = buffered.split('\n\n');
      buffered = blocks.pop() ?? '';
      for (const line of blocks.flatMap(block => block.split('\n')).filter(entry => entry.startsWith('data: '))) {
        const event = JSON.parse(line.slice(6)) as {type: string; text?: string};
        if (event.type === 'token') {
          state.tokens++;
          state.text += event.text ?? '';
        } else if (event.type === 'done') {
          state.done = true;
        }
      }
    }
  })().catch((error: unknown) => {
    if (!controller.signal.aborted) {
      throw error;
    }
  });
  return {state, finished, abort: () => controller.abort()};
}

serial('four concurrent greedy requests on --parallel 4 each get their text alone, in well under 4x the time of one', async t => {
  t.timeout(600_000);
  await startWorker();
  const heartbeats: Heartbeat[] = [];
  let watching = true;
  const watcher = (async () => {
    while (watching) {
      const heartbeat = await lastHeartbeat();
      if (heartbeat !== null) {
        heartbeats.push(heartbeat);
      }
      await new Promise(resolve => setTimeout(resolve, 100));
    }
  })();
  // Two pairs of rounds, alone then together and together then alone: each pair is measured back
  // to back, so a burst of load from other processes on a shared machine weighs on both of its
  // sides, and the better pair counts (pairing the quietest round of one side with the busiest
  // of the other would measure the load, not the batching).
  const aloneMs: number[] = [];
  const togetherMs: number[] = [];
  let aloneTexts: string[] = [];
  const runAlone = async () => {
    const answers: Array<{text: string; ms: number}> = [];
    for (const prompt of prompts) {
      answers.push(await infer(prompt, 32));
    }
    aloneMs.push(answers.reduce((sum, answer) => sum + answer.ms, 0) / answers.length);
    if (aloneTexts.length > 0) {
      t.deepEqual(
        answers.map(answer => answer.text),
        aloneTexts,
        'the same texts alone every time',
      );
    }
    aloneTexts = answers.map(answer => answer.text);
  };
  const runTogether = async () => {
    const began = performance.now();
    const together = await Promise.all(prompts.map(prompt => infer(prompt, 32)));
    togetherMs.push(performance.now() - began);
    return together.map(answer => answer.text);
  };
  await runAlone();
  const first = await runTogether();
  const second = await runTogether();
  await runAlone();
  watching = false;
  await watcher;

  for (const texts of [first, second]) {
    texts.forEach((text, index) => t.is(text, aloneTexts[index]!, `prompt ${index} in the batch`));
  }
  // Round order alone, together, together, alone: pair 1 is (alone 0, together 0), pair 2 (alone 1, together 1).
  const ratio = Math.min(...togetherMs.map((ms, i) => ms / aloneMs[i]!));
  t.log(
    `one alone: ${aloneMs.map(Math.round).join(', ')} ms (mean of 4 per round); four at once: ${togetherMs.map(Math.round).join(', ')} ms; best pair's ratio ${ratio.toFixed(2)}x`,
  );
  // Batched, four take 1.7-2.5x one on the 2-core VMs (2.2-2.5x on an AVX-512 one), 2.6x with a
  // load average of 10 from other processes; 3x still says the four shared their steps (one at a
  // time would be 4x).
  t.true(ratio < 3, `four concurrent requests took ${ratio.toFixed(2)}x one alone`);
  t.true(
    heartbeats.some(heartbeat => heartbeat.batch_size === 4),
    `a heartbeat saw the four in one batch: ${JSON.stringify(heartbeats.map(heartbeat => heartbeat.batch_size))}`,
  );
});

serial('a client that goes away mid-stream frees its slot: a fifth request runs while the other three stream on', async t => {
  t.timeout(600_000);
  await startWorker();
  const fifthPrompt = 'The capital of France is';
  const fifthAlone = await infer(fifthPrompt, 8);

  const streams = prompts.map(prompt => openStream(prompt, 400));
  try {
    await waitFor(() => streams.every(stream => stream.state.tokens > 0), 120_000, 'a first token on each of the four streams');
    await waitFor(async () => (await lastHeartbeat())?.batch_size === 4, 20_000, 'a heartbeat with four streams in the batch');

    // The worker admits four at once: the fifth waits until a slot frees.
    const fifth = infer(fifthPrompt, 8);
    await waitFor(async () => ((await lastHeartbeat())?.queue_depth ?? 0) >= 1, 20_000, 'a heartbeat with the fifth request waiting');
    t.true(streams.every(stream => !stream.state.done));

    streams[0]!.abort();
    const answer = await fifth;
    const stillRunning = streams.slice(1).filter(stream => !stream.state.done).length;
    t.is(stillRunning, 3, 'the fifth request ended while the other three were still streaming');
    t.is(answer.text, fifthAlone.text, 'the fifth request, in a freed slot, generates what it does alone');
    const progress = streams.slice(1).map(stream => stream.state.tokens);
    await waitFor(() => streams.slice(1).every((stream, index) => stream.state.tokens > progress[index]!), 60_000, 'the three streams to go on');
  } finally {
    streams.forEach(stream => stream.abort());
    await Promise.all(streams.map(stream => stream.finished));
  }
  await waitFor(
    async () => {
      const heartbeat = await lastHeartbeat();
      return heartbeat?.batch_size === 0 && heartbeat.queue_depth === 0;
    },
    30_000,
    'every slot free once the clients went away',
  );
  t.true(isAlive(worker!.pid));
});
