/** The worker's heartbeat loop against a stand-in hive on loopback: secret, commands, orphan exit. */
import http from 'node:http';
import type {AddressInfo} from 'node:net';
import test from 'ava';
import {startHeartbeatLoop, workerSecretHeader} from '../../src/worker/heartbeat-loop.js';
import type {HiveCommand} from '../../src/protocol/wire.js';

async function standInHive(answer: (body: any, secret: string | undefined) => {status: number; body: unknown}) {
  const server = http.createServer((request, response) => {
    let text = '';
    request.on('data', chunk => {
      text += String(chunk);
    });
    request.on('end', () => {
      const secret = request.headers[workerSecretHeader];
      const reply = answer(JSON.parse(text), typeof secret === 'string' ? secret : undefined);
      response.writeHead(reply.status, {'content-type': 'application/json'}).end(JSON.stringify(reply.body));
    });
  });
  await new Promise<void>(resolve => server.listen({host: '127.0.0.1', port: 0}, resolve));
  return {url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, close: () => server.close()};
}

const payload = async () => ({worker_id: 'worker-1', status: 'ready' as const});

test('sends the secret and obeys the commands in the answer', async t => {
  const seen: Array<string | undefined> = [];
  const hive = await standInHive((_body, secret) => {
    seen.push(secret);
    return {status: 200, body: {ack: true, commands: [{type: 'drain', reason: 'test'}]}};
  });
  const commands = await new Promise<HiveCommand[]>(resolve => {
    const loop = startHeartbeatLoop({
      hiveUrl: hive.url,
      secret: 's3cret',
      intervalMs: 100,
      orphanTimeoutMs: 10_000,
      payload,
      onCommands(received) {
        loop.stop();
        resolve(received);
      },
      onOrphaned: () => t.fail('not orphaned'),
      log: () => undefined,
    });
  });
  hive.close();
  t.deepEqual(commands, [{type: 'drain', reason: 'test'}]);
  t.is(seen[0], 's3cret');
});

test('with no acknowledged heartbeat for the orphan timeout, the worker is told to go', async t => {
  // A hive that does not know this worker (404) counts as no hive at all.
  const hive = await standInHive(() => ({status: 404, body: {error: {code: 'worker_not_found', message: 'unknown'}}}));
  const started = Date.now();
  await new Promise<void>(resolve => {
    const loop = startHeartbeatLoop({
      hiveUrl: hive.url,
      secret: 'x',
      intervalMs: 100,
      orphanTimeoutMs: 500,
      payload,
      onCommands: () => t.fail('no commands'),
      onOrphaned() {
        loop.stop();
        resolve();
      },
      log: () => undefined,
    });
  });
  hive.close();
  const elapsed = Date.now() - started;
  t.true(elapsed >= 500 && elapsed < 2_000, `orphaned after ${elapsed} ms`);
});
