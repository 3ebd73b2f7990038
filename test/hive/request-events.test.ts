/**
 * The hive's request events on GET /v1/events: started and ended (with the tokens of the answer)
 * for requests it routes, streamed or not, and the worker's in-flight count; a real hive and a
 * plugin worker (the echo engine, one token per word).
 */
import fs from 'node:fs';
import path from 'node:path';
import {fileURLToPath} from 'node:url';
import test from 'ava';
import {HiveEventSchema, type HiveEvent} from '../../src/protocol/wire.js';
import {waitFor} from '../helpers/process-tree.js';
import {postJson, postStream, rbee, startHive, tempHome} from '../helpers/rbee-process.js';
import {defaultModelPath} from '../helpers/test-model.js';

const echoAdapter = fileURLToPath(new URL('../fixtures/adapter-echo', import.meta.url));

test('routed requests appear as request events: started, then ended with the tokens relayed, streamed or not', async t => {
  const home = tempHome();
  fs.writeFileSync(path.join(home, 'rbee.config.json'), JSON.stringify({adapters: [echoAdapter]}));
  const hive = await startHive({home, cwd: tempHome('rbee-elsewhere-')});
  t.teardown(() => hive.stop());
  const model = await defaultModelPath();
  const spawned = await rbee(['--json', 'worker', 'spawn', '--type', 'echo', '--model', model, '--wait', '--timeout', '60'], {hive});
  t.is(spawned.exitCode, 0, String(spawned.stderr));
  const worker = JSON.parse(String(spawned.stdout)) as {worker_id: string};

  const controller = new AbortController();
  t.teardown(() => controller.abort());
  const events: HiveEvent[] = [];
  const response = await fetch(`${hive.url}/v1/events`, {signal: controller.signal});
  void (async () => {
    let buffer = '';
    for await (const chunk of response.body!) {
      buffer += Buffer.from(chunk).toString('utf8');
      let boundary;
      while ((boundary = buffer.indexOf('\n\n')) !== -1) {
        const frame = buffer.slice(0, boundary);
        buffer = buffer.slice(boundary + 2);
        if (frame.startsWith('data: ')) {
          events.push(HiveEventSchema.parse(JSON.parse(frame.slice(6))));
        }
      }
    }
  })().catch(() => undefined);
  await waitFor(() => events.some(event => event.type === 'snapshot'), 10_000, 'the snapshot');

  const plain = await postJson(`${hive.url}/v1/infer`, {prompt: 'bees make honey', max_tokens: 3});
  t.is(plain.status, 200);
  const streamed = await postStream(`${hive.url}/v1/infer`, {prompt: 'bees make honey', max_tokens: 4, stream: true});
  t.is(streamed.status, 200);
  const requests = () => events.filter((event): event is Extract<HiveEvent, {type: 'request'}> => event.type === 'request');
  await waitFor(() => requests().filter(event => event.phase === 'ended').length === 2, 10_000, 'two ended request events');

  const seen = requests().map(event => [event.worker_id, event.phase, event.in_flight]);
  t.deepEqual(
    seen.filter(([, phase]) => phase !== 'progress'),
    [
      [worker.worker_id, 'started', 1],
      [worker.worker_id, 'ended', 0],
      [worker.worker_id, 'started', 1],
      [worker.worker_id, 'ended', 0],
    ],
  );
  const tokens = (from: number) =>
    requests()
      .slice(from)
      .reduce((sum, event) => sum + (event.tokens ?? 0), 0);
  const secondStart = requests().findIndex((event, index) => index > 0 && event.phase === 'started');
  t.is(tokens(0) - tokens(secondStart), 3, "the whole answer's tokens_generated");
  t.is(tokens(secondStart), 4, 'one per streamed token event');
  const ended = requests().filter(event => event.phase === 'ended');
  t.true(ended.every(event => event.status === 200 && (event.duration_ms ?? -1) >= 0));
});
