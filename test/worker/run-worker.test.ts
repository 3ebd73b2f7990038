/**
 * A worker starts its engine before its HTTP server is up (the two start-ups overlap); when the
 * server then cannot listen, the worker fails and takes the engine it started down with it.
 */
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import {fileURLToPath} from 'node:url';
import test from 'ava';
import {isAlive, processesMentioning, waitFor} from '../helpers/process-tree.js';
import {rbee, tempHome} from '../helpers/rbee-process.js';

const echoAdapter = fileURLToPath(new URL('../fixtures/adapter-echo/', import.meta.url));

test('a worker whose port is taken exits saying so, and stops the engine it had already started', async t => {
  const blocker = net.createServer();
  await new Promise<void>(resolve => blocker.listen(0, '127.0.0.1', resolve));
  t.teardown(() => blocker.close());
  const {port} = blocker.address() as net.AddressInfo;
  const dir = tempHome('rbee-run-worker-');
  t.teardown(() => fs.rmSync(dir, {recursive: true, force: true}));
  const config = path.join(dir, 'rbee.config.json');
  fs.writeFileSync(config, JSON.stringify({adapters: [echoAdapter]}));
  const workerId = `taken-port-${process.pid}`;

  const result = await rbee(['worker', 'run', '--type', 'echo', '--worker-id', workerId, '--model-path', config, '--port', String(port), '--config', config], {
    env: {RBEE_WORKER_SECRET: ''},
    timeout: 60_000,
  });

  t.is(result.exitCode, 1, String(result.stderr));
  t.regex(String(result.stderr), new RegExp(`cannot serve on 127\\.0\\.0\\.1:${port}: .*EADDRINUSE`));
  const started = /echo engine pid (\d+)/.exec(String(result.stderr));
  t.not(started, null, `the engine was started before the server listened: ${String(result.stderr)}`);
  await waitFor(() => !isAlive(Number(started![1])), 10_000, 'the engine to be gone');
  t.deepEqual(processesMentioning(workerId), []);
});
