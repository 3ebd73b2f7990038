/**
 * `rbee adapter init`: a plugin package that works from its first minute. Its engine is a tiny
 * HTTP server that echoes the prompt (the shape every real engine adapter has: a subprocess
 * spawned through the context, polled until healthy, asked over HTTP), and its test drives it
 * through `rbee/testing`'s harness with `node --test`, so the author replaces the engine and keeps
 * the test. Plain JavaScript with JSDoc types: no build step between editing and `rbee adapter add`.
 */
import fs from 'node:fs';
import path from 'node:path';
import {RbeeError} from '../../errors.js';

export type ScaffoldOptions = {dir: string; name: string; type: string; rbeeVersion: string};

function files(options: ScaffoldOptions): Record<string, string> {
  const packageName = path.basename(options.dir);
  return {
    'package.json': `${JSON.stringify(
      {
        name: packageName,
        version: '0.1.0',
        description: `rbee adapter ${options.name}: worker type "${options.type}"`,
        type: 'module',
        main: 'index.js',
        files: ['index.js', 'engine.js'],
        scripts: {test: 'node --test test/'},
        peerDependencies: {rbee: `^${options.rbeeVersion}`},
        devDependencies: {rbee: `^${options.rbeeVersion}`},
      },
      null,
      2,
    )}\n`,
    'index.js': `// The adapter: rbee calls this factory with the options from its config or from
// \`rbee worker spawn --adapter-option key=value\`, and uses the object it returns for one worker.
// Lifecycle and failure contract: rbee's docs/adapters.md.
import {fileURLToPath} from 'node:url';
import {WatchedEngine} from 'rbee';

const enginePath = fileURLToPath(new URL('./engine.js', import.meta.url));

/**
 * @param {{greeting?: string}} [options]
 * @returns {import('rbee').RbeeAdapter}
 */
export default function adapter(options = {}) {
  // Check options here, once, with a message that names the option: a bad one then fails the
  // spawn (HTTP 400) instead of a worker. (With zod: \`parseAdapterOptions\` from 'rbee'.)
  for (const key of Object.keys(options)) {
    if (key !== 'greeting') {
      throw new TypeError(\`${options.name}: unknown option \\\`\${key}\\\` (known: greeting)\`);
    }
  }
  if (options.greeting !== undefined && typeof options.greeting !== 'string') {
    throw new TypeError(\`${options.name}: option \\\`greeting\\\` must be a string, got \${typeof options.greeting}\`);
  }
  let base = '';
  /** @type {WatchedEngine | null} */
  let engine = null;

  return {
    name: '${options.name}',
    type: '${options.type}',
    description: 'TODO: what engine this runs',
    // The device backends the engine runs on (cpu, cuda, metal): a spawn on any other is refused.
    // A function may probe what is installed and say \`{cuda: {unavailable: 'why'}}\`.
    backends: {cpu: {}},
    async start(context) {
      const port = await context.freePort();
      base = \`http://127.0.0.1:\${port}\`;
      const args = [enginePath, '--port', String(port), ...(options.greeting === undefined ? [] : ['--greeting', options.greeting])];
      // Watched: an engine that dies after start is reported at once, not at the next heartbeat.
      engine = WatchedEngine.spawn(context, {command: process.execPath, args}, {name: 'engine'});
    },
    async ready(context) {
      engine?.throwIfFailed();
      try {
        const ok = (await fetch(\`\${base}/health\`)).ok;
        if (ok) {
          context.reportLoadProgress(1);
        }
        return ok;
      } catch {
        return false;
      }
    },
    async infer(request) {
      const response = await fetch(\`\${base}/generate\`, {
        method: 'POST',
        headers: {'content-type': 'application/json'},
        body: JSON.stringify({prompt: request.kind === 'chat' ? request.messages.map(message => message.content).join('\\n') : request.prompt, max_tokens: request.maxTokens}),
        signal: request.signal,
      });
      const result = await response.json();
      for (const piece of result.pieces) {
        request.onText(piece);
      }
      return {text: result.pieces.join(''), tokensGenerated: result.pieces.length, promptTokens: result.prompt_tokens, finishReason: 'length'};
    },
    async heartbeat() {
      const stats = await (await fetch(\`\${base}/stats\`)).json();
      return {ram_used: stats.rss, loaded_models: ['${options.type}']};
    },
    async stop() {
      await engine?.stop(5_000);
      engine = null;
    },
  };
}
`,
    'engine.js': `// A stand-in engine: an HTTP server that answers with the prompt's words. Replace it with the
// real engine's command line in index.js; keep the shape (a process, a health check, HTTP).
import http from 'node:http';

const flag = name => process.argv[process.argv.indexOf(name) + 1];
const port = Number(flag('--port'));
const greeting = process.argv.includes('--greeting') ? flag('--greeting') : null;
let served = 0;

http.createServer((request, response) => {
  if (request.url === '/health') {
    response.writeHead(200).end('ok');
  } else if (request.url === '/stats') {
    response.writeHead(200, {'content-type': 'application/json'}).end(JSON.stringify({served, rss: process.memoryUsage().rss}));
  } else if (request.url === '/generate' && request.method === 'POST') {
    let body = '';
    request.on('data', chunk => {
      body += chunk;
    });
    request.on('end', () => {
      const {prompt, max_tokens: maxTokens} = JSON.parse(body);
      const words = [...(greeting === null ? [] : [greeting]), ...String(prompt).split(/\\s+/).filter(Boolean)];
      served++;
      const pieces = words.slice(0, maxTokens).map(word => \`\${word} \`);
      response.writeHead(200, {'content-type': 'application/json'}).end(JSON.stringify({pieces, prompt_tokens: words.length}));
    });
  } else {
    response.writeHead(404).end();
  }
}).listen(port, '127.0.0.1');
`,
    'test/adapter.test.js': `// Runs the adapter's real engine through a worker's lifecycle, without a hive: npm test.
import assert from 'node:assert/strict';
import {test} from 'node:test';
import {createAdapterHarness} from 'rbee/testing';
import adapter from '../index.js';

test('starts, becomes ready, generates, reports a heartbeat and stops', async () => {
  const harness = await createAdapterHarness(adapter, {modelPath: 'unused', adapterOptions: {greeting: 'hello'}, readyTimeoutMs: 30_000});
  try {
    await harness.start();
    assert.deepEqual(harness.failures, []);
    assert.equal(harness.progress.at(-1), 1);
    const result = await harness.infer({prompt: 'the capital of France is', maxTokens: 3});
    assert.equal(result.text, 'hello the capital ');
    assert.deepEqual(result.streamed, ['hello ', 'the ', 'capital ']);
    const heartbeat = await harness.heartbeat();
    assert.ok(heartbeat.ram_used > 0);
  } finally {
    await harness.stop();
  }
});

test('a bad option is refused by the factory, naming it', async () => {
  await assert.rejects(createAdapterHarness(adapter, {modelPath: 'unused', adapterOptions: {greting: 'typo'}}), /unknown option \`greting\`/);
});
`,
    'README.md': `# ${packageName}

An rbee adapter: worker type \`${options.type}\` (\`${options.name}\`).

\`\`\`bash
npm test                                   # the adapter's lifecycle, no hive needed
rbee adapter add ./${packageName}          # record it in the hive's config
rbee hive stop; rbee hive start --detach   # a hive loads adapters when it starts
rbee worker spawn --type ${options.type} --model <model> --adapter-option greeting=hi --wait
\`\`\`

The lifecycle rbee drives (start, ready polling, infer, heartbeat, stop) and what a failure must
look like: rbee's \`docs/adapters.md\`.
`,
  };
}

/** Writes the package; refuses a folder that already has files, so nothing of the author's is overwritten. */
export function scaffoldAdapter(options: ScaffoldOptions): string[] {
  if (fs.existsSync(options.dir) && fs.readdirSync(options.dir).length > 0) {
    throw new RbeeError('invalid_request', `${options.dir} is not empty: pick a new folder for the adapter package`);
  }
  const written: string[] = [];
  for (const [name, text] of Object.entries(files(options))) {
    const file = path.join(options.dir, name);
    fs.mkdirSync(path.dirname(file), {recursive: true});
    fs.writeFileSync(file, text, {flag: 'wx'});
    written.push(file);
  }
  return written;
}
