/** The CLI's hive client following an event stream: keep-alives keep it, silence ends it. */
import test from 'ava';
import {HiveClient} from '../../src/cli/hive-client.js';
import {RbeeError} from '../../src/errors.js';
import {startFixtureServer} from '../helpers/http-fixture-server.js';

test('a stream that keeps sending keep-alives is followed; one that goes silent fails with a timeout naming the hive', async t => {
  let silentAfterMs = 0;
  const server = await startFixtureServer((_request, response) => {
    response.writeHead(200, {'content-type': 'text/event-stream'});
    response.write('data: {"n":1}\n\n');
    const beat = setInterval(() => response.write(': keep-alive\n\n'), 100);
    // Then nothing at all, with the socket left open: a hung hive.
    setTimeout(() => clearInterval(beat), silentAfterMs);
    response.on('close', () => clearInterval(beat));
  });
  try {
    const client = new HiveClient({url: server.url, token: undefined});
    silentAfterMs = 1_000;
    const data: string[] = [];
    const started = Date.now();
    const error = await t.throwsAsync(client.subscribe('/v1/events', chunk => data.push(chunk), undefined, 300), {instanceOf: RbeeError});
    const lasted = Date.now() - started;
    t.deepEqual(data, ['{"n":1}']);
    t.is(error.code, 'timeout');
    t.regex(error.message, new RegExp(`the hive at ${server.url} sent nothing for 0.3 s`));
    t.true(lasted >= 1_000 && lasted < 5_000, `kept while keep-alives came, gave up soon after they stopped (${lasted} ms)`);
  } finally {
    await server.close();
  }
});

test('a hive that accepts the connection but never answers is given up too, and an abort is not a timeout', async t => {
  const server = await startFixtureServer(() => new Promise(() => undefined));
  try {
    const client = new HiveClient({url: server.url, token: undefined});
    const error = await t.throwsAsync(client.subscribe('/v1/events', () => undefined, undefined, 300), {instanceOf: RbeeError});
    t.is(error.code, 'timeout');
    const controller = new AbortController();
    setTimeout(() => controller.abort(), 100);
    const aborted = await t.throwsAsync(client.subscribe('/v1/events', () => undefined, controller.signal, 5_000));
    t.not((aborted as RbeeError).code, 'timeout');
  } finally {
    await server.close();
  }
});
