/**
 * `worker spawn --model hf:…` through the hive: the model downloads from a Hugging Face-shaped
 * server (a local one here: RBEE_HF_ENDPOINT), with progress the CLI can show, then serves.
 */
import crypto from 'node:crypto';
import fs from 'node:fs';
import test from 'ava';
import {startFixtureServer, sendBytes} from '../helpers/http-fixture-server.js';
import {getJson, postJson, rbee, startHive} from '../helpers/rbee-process.js';
import {defaultModelPath} from '../helpers/test-model.js';

test('an hf: model downloads (checksum from x-linked-etag), is cached, and serves', async t => {
  const weights = fs.readFileSync(await defaultModelPath());
  const sha256 = crypto.createHash('sha256').update(weights).digest('hex');
  const hub = await startFixtureServer((request, response) => {
    if (request.url === '/acme/gemma-270m/resolve/main/gemma.gguf') {
      sendBytes(request, response, weights, {headers: {'x-linked-etag': `"${sha256}"`}});
    } else {
      response.writeHead(404).end();
    }
  });
  const hive = await startHive({env: {RBEE_HF_ENDPOINT: hub.url}, args: ['--heartbeat-interval', '300']});
  try {
    const spawned = await postJson(`${hive.url}/v1/workers`, {model: 'hf:acme/gemma-270m:gemma.gguf', threads: 1, parallel: 1, context_size: 512});
    t.is(spawned.status, 201, JSON.stringify(spawned.body));
    const id = spawned.body.worker_id as string;
    const phases = new Set<string>();
    for (let attempt = 0; attempt < 600; attempt++) {
      const info = (await getJson(`${hive.url}/v1/workers/${id}`)).body;
      if (info.progress !== null) {
        phases.add(info.progress.phase);
      }
      if (info.state !== 'starting') {
        t.is(info.state, 'ready', String(info.reason));
        break;
      }
      await new Promise(resolve => setTimeout(resolve, 20));
    }
    t.true(phases.has('loading'), `phases seen: ${[...phases].join(', ')}`);
    const info = (await getJson(`${hive.url}/v1/workers/${id}`)).body;
    t.is(info.model, 'gemma');
    t.true(info.model_path.endsWith('/hf/acme/gemma-270m/main/gemma.gguf'));
    const answer = await postJson(`${hive.url}/v1/infer`, {prompt: 'Hello', max_tokens: 3, model: 'hf:acme/gemma-270m:gemma.gguf'});
    t.is(answer.status, 200, JSON.stringify(answer.body));

    // A second worker for the same reference reuses the cached file: the hub is not asked again.
    const downloads = hub.requests.length;
    const again = await rbee(
      ['--json', 'worker', 'spawn', '--model', 'hf:acme/gemma-270m:gemma.gguf', '--threads', '1', '--parallel', '1', '--context-size', '512', '--wait'],
      {hive},
    );
    t.is(again.exitCode, 0, String(again.stderr));
    t.is(hub.requests.length, downloads);
  } finally {
    await hive.stop();
    await hub.close();
  }
});

test('an hf: model that the hub does not have fails the worker with the URL named', async t => {
  const hub = await startFixtureServer((_request, response) => {
    response.writeHead(404).end();
  });
  const hive = await startHive({env: {RBEE_HF_ENDPOINT: hub.url}});
  try {
    const cli = await rbee(['worker', 'spawn', '--model', 'hf:acme/missing:model.gguf', '--restart', 'never', '--wait', '--timeout', '30'], {hive});
    t.is(cli.exitCode, 1);
    t.regex(String(cli.stderr), /acme\/missing\/resolve\/main\/model\.gguf/);
  } finally {
    await hive.stop();
    await hub.close();
  }
});
