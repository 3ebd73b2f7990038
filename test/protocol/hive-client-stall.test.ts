/** The hive client following an event stream: keep-alives keep it, silence ends it. */
import test from 'ava';
import {HiveClient} from '../../src/protocol/hive-client.js';
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
    const follow = async () => {
      for await (const chunk of client.eventData({stallMs: 300})) {
        data.push(chunk);
      }
    };
    const error = await t.throwsAsync(follow(), {instanceOf: RbeeError});
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
    const drain = async (options: {signal?: AbortSignal; stallMs: number}) => {
      for await (const _data of client.eventData(options)) {
        // the fixture never answers: nothing arrives
      }
    };
    const error = await t.throwsAsync(drain({stallMs: 300}), {instanceOf: RbeeError});
    t.is(error.code, 'timeout');
    const controller = new AbortController();
    setTimeout(() => controller.abort(), 100);
    // The caller's own abort is not the hive's failure: it surfaces as fetch's AbortError, not an RbeeError.
    const aborted = await t.throwsAsync(drain({signal: controller.signal, stallMs: 5_000}), {any: true});
    t.is((aborted as {name?: string}).name, 'AbortError');
    t.false(aborted instanceof RbeeError);
  } finally {
    await server.close();
  }
});
