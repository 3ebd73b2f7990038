/**
 * `rbee worker spawn --wait` against a scripted hive (a loopback HTTP server answering the worker
 * API with the states a real hive goes through): a failure the hive restarts the worker after is
 * waited out and said, whatever moment the CLI polls at. The hive marks a worker `failed` the
 * moment it fails, while its process is still going down; the restart policy decides only once the
 * process is gone, and on a loaded machine the CLI could poll in between (the flake of
 * test/hive/honest-answers.test.ts).
 */
import http from 'node:http';
import type {AddressInfo} from 'node:net';
import test from 'ava';
import type {WorkerInfo} from '../../src/protocol/wire.js';
import {workerInfo} from '../helpers/wire-fixtures.js';
import {rbee} from '../helpers/rbee-process.js';

/** A hive whose worker answers each GET with the next of `states` (the last one repeats). */
async function scriptedHive(states: Partial<WorkerInfo>[]): Promise<{url: string; gets: () => number; close: () => Promise<void>}> {
  const id = 'worker-5c41p7ed';
  let gets = 0;
  const server = http.createServer((request, response) => {
    const send = (fields: Partial<WorkerInfo>) => {
      response.writeHead(200, {'content-type': 'application/json'});
      response.end(JSON.stringify(workerInfo({worker_id: id, ...fields})));
    };
    if (request.method === 'POST' && request.url === '/v1/workers') {
      request.resume();
      send({state: 'starting', pid: 4242});
    } else if (request.method === 'GET' && request.url === `/v1/workers/${id}`) {
      send(states[Math.min(gets++, states.length - 1)]!);
    } else {
      response.writeHead(404, {'content-type': 'application/json'});
      response.end(JSON.stringify({error: {code: 'not_found', message: `${request.method} ${request.url}`}}));
    }
  });
  await new Promise<void>(resolve => server.listen(0, '127.0.0.1', resolve));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    gets: () => gets,
    close: () => new Promise(resolve => server.close(() => resolve())),
  };
}

const cause = 'adapter acme:flaky failed to start: engine binary /opt/acme/engine is missing';

test('failed with its process still going down, then restarted and ready: the CLI waits, says why, and succeeds', async t => {
  const hive = await scriptedHive([
    {state: 'starting', pid: 4242},
    {state: 'failed', pid: 4242, reason: cause},
    {state: 'failed', pid: 4242, reason: cause},
    {state: 'starting', pid: null, reason: `restarting in 1000 ms after: ${cause}`, last_failure: cause, restarts: 1},
    {state: 'ready', pid: 4343, last_failure: cause, restarts: 1},
  ]);
  t.teardown(() => hive.close());
  const cli = await rbee(['worker', 'spawn', '--type', 'flaky', '--model', 'default', '--wait', '--timeout', '60'], {
    env: {RBEE_HIVE_URL: hive.url},
    timeout: 60_000,
  });
  t.is(cli.exitCode, 0, String(cli.stderr));
  t.regex(String(cli.stderr), new RegExp(`worker worker-5c41p7ed failed: ${cause.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')}\\nrbee: the hive restarts it`));
  t.is(hive.gets(), 5);
});

test('failed and its process gone with no restart: the CLI stops waiting and says the final reason', async t => {
  const hive = await scriptedHive([
    {state: 'failed', pid: 4242, reason: cause},
    {state: 'failed', pid: null, reason: `${cause} (killed by SIGKILL)`, last_failure: cause},
  ]);
  t.teardown(() => hive.close());
  const cli = await rbee(['worker', 'spawn', '--type', 'flaky', '--model', 'default', '--wait', '--timeout', '60', '--restart', 'never'], {
    env: {RBEE_HIVE_URL: hive.url},
    timeout: 60_000,
  });
  t.is(cli.exitCode, 1, String(cli.stderr));
  t.regex(String(cli.stderr), /worker worker-5c41p7ed failed: .*engine binary \/opt\/acme\/engine is missing \(killed by SIGKILL\)/);
  t.is(hive.gets(), 2, 'it read the settled record, not the one still going down');
});
