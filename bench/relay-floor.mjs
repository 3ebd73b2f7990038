/**
 * The floor under issue 10 §6's TTFT goal: what Node processes in a token's path cost on this
 * machine at the least, with none of rbee's code. An engine that answers at once (its first SSE
 * event written as its request ends) is asked, one request at a time, in turn:
 *   straight   — the client to the engine;
 *   pipe       — through one process that copies bytes both ways (net.Socket.pipe);
 *   lean relay — through two processes shaped as rbee's hive and worker, doing the least each must:
 *                the "hive" reads the HTTP request, parses its JSON and sends it over a Unix socket in
 *                length-prefixed frames; the "worker" parses it, asks the engine over keep-alive HTTP,
 *                parses the engine's SSE and sends each event re-encoded back; the "hive" writes it to
 *                its client as SSE.
 * TTFT is request sent → the first body bytes; the medians' differences from straight are what
 * the processes add. rbee's own relay (bench/relay-latency.ts, bench/gpu-relay.ts) does more per
 * step (validation, routing, admission, cancellation, accounting); the gap to the lean relay is
 * its code, the lean relay's own overhead is the machine's (wake-ups, caches gone cold while a
 * process sleeps between steps). Needs Node only: no repo, no packages.
 *
 *   node bench/relay-floor.mjs [--rounds 2000] [--warmup 1000] [--engine http://127.0.0.1:PORT [--model NAME]] [--out file.json]
 * --model: the name a server that wants one (vLLM) serves its model as; llama-server takes any.
 */
import {spawn} from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import {parseArgs} from 'node:util';

const frameHeader = 5;

function frame(type, payload) {
  const bytes = Buffer.from(payload);
  const out = Buffer.allocUnsafe(frameHeader + bytes.length);
  out.writeUInt32BE(bytes.length, 0);
  out[4] = type;
  bytes.copy(out, frameHeader);
  return out;
}

/** Calls onFrame(type, payload) for each whole frame, however the bytes are cut. */
function frameReader(onFrame) {
  let pending = Buffer.alloc(0);
  return chunk => {
    pending = pending.length === 0 ? chunk : Buffer.concat([pending, chunk]);
    while (pending.length >= frameHeader) {
      const length = pending.readUInt32BE(0);
      if (pending.length < frameHeader + length) {
        return;
      }
      onFrame(pending[4], pending.subarray(frameHeader, frameHeader + length));
      pending = pending.subarray(frameHeader + length);
    }
  };
}

/** A HEAD frame's payload: the status, u16 (as rbee's link; the lean relay sends no headers). */
function statusBytes(code) {
  const bytes = Buffer.alloc(2);
  bytes.writeUInt16BE(code);
  return bytes;
}

const request = 2;
const head = 3;
const data = 4;
const end = 5;

/** Each role tells its parent where it listens, over the IPC channel. */
const roles = {
  engine() {
    http
      .createServer((incoming, response) => {
        incoming.resume();
        incoming.on('end', () => {
          response.writeHead(200, {'content-type': 'text/event-stream'});
          response.write('data: {"choices":[{"text":"bee"}]}\n\n');
          setImmediate(() => response.end('data: [DONE]\n\n'));
        });
      })
      .listen(0, '127.0.0.1', function () {
        process.send(this.address().port);
      });
  },
  pipe(targetOrigin) {
    const target = new URL(targetOrigin);
    net
      .createServer(client => {
        const upstream = net.connect(Number(target.port), target.hostname);
        client.setNoDelay(true);
        upstream.setNoDelay(true);
        client.pipe(upstream).pipe(client);
        client.on('error', () => upstream.destroy());
        upstream.on('error', () => client.destroy());
      })
      .listen(0, '127.0.0.1', function () {
        process.send(this.address().port);
      });
  },
  worker(engineOrigin, socketPath) {
    const engine = new URL(engineOrigin);
    const agent = new http.Agent({keepAlive: true});
    net
      .createServer(link => {
        link.on(
          'data',
          frameReader((_type, payload) => {
            const body = JSON.parse(payload.toString('utf8'));
            if (typeof body.prompt !== 'string') {
              throw new Error('prompt must be a string');
            }
            const ask = retried => {
              const upstream = http.request(
                {
                  host: engine.hostname,
                  port: Number(engine.port),
                  method: 'POST',
                  path: '/v1/completions',
                  agent,
                  headers: {'content-type': 'application/json'},
                },
                response => {
                  let first = true;
                  let text = '';
                  let tokens = 0;
                  const status = statusBytes(response.statusCode ?? 502);
                  const send = out => {
                    link.write(first ? Buffer.concat([frame(head, status), out]) : out);
                    first = false;
                  };
                  response.setEncoding('utf8');
                  response.on('data', chunk => {
                    text += chunk;
                    if (response.statusCode !== 200) {
                      return; // an engine's refusal is passed on whole at the end
                    }
                    for (let at = text.indexOf('\n\n'); at !== -1; at = text.indexOf('\n\n')) {
                      const event = text.slice('data: '.length, at);
                      text = text.slice(at + 2);
                      const piece = event === '[DONE]' ? undefined : JSON.parse(event).choices?.[0]?.text;
                      if (typeof piece === 'string' && piece !== '') {
                        tokens++;
                        send(frame(data, `data: ${JSON.stringify({type: 'token', text: piece})}\n\n`));
                      }
                    }
                  });
                  // rbee's closing event, as a worker sends it: a client that waits for it can time this relay too.
                  response.on('end', () => {
                    const done = `data: ${JSON.stringify({type: 'done', tokens_generated: tokens, finish_reason: 'length'})}\n\n`;
                    send(Buffer.concat([frame(data, response.statusCode === 200 ? done : text), frame(end, '')]));
                  });
                },
              );
              // A server that closes a kept connection after each answer (llama-server does) resets the next
              // request sent on it before reading it: sent again once, on a new connection, as rbee's worker does.
              upstream.on('error', error => {
                if (!retried && upstream.reusedSocket && error.code === 'ECONNRESET') {
                  ask(true);
                } else {
                  link.write(Buffer.concat([frame(head, statusBytes(502)), frame(data, `the engine failed: ${error.message}`), frame(end, '')]));
                }
              });
              upstream.end(JSON.stringify({model: body.model, prompt: body.prompt, max_tokens: body.max_tokens, stream: true}));
            };
            ask(false);
          }),
        );
      })
      .listen(socketPath, () => process.send(socketPath));
  },
  hive(socketPath) {
    const link = net.connect(socketPath);
    let answering = null;
    link.on(
      'data',
      frameReader((type, payload) => {
        if (type === head) {
          answering.writeHead(payload.readUInt16BE(0), {'content-type': 'text/event-stream'});
        } else if (type === data) {
          answering.write(payload);
        } else if (type === end) {
          answering.end();
          answering = null;
        }
      }),
    );
    http
      .createServer((incoming, response) => {
        const chunks = [];
        incoming.on('data', chunk => chunks.push(chunk));
        incoming.on('end', () => {
          const raw = Buffer.concat(chunks);
          const body = JSON.parse(raw.toString('utf8'));
          if (typeof body.prompt !== 'string') {
            response.writeHead(400).end();
            return;
          }
          answering = response;
          link.write(frame(request, raw));
        });
      })
      .listen(0, '127.0.0.1', function () {
        process.send(this.address().port);
      });
  },
};

const [role, ...roleArgs] = process.argv.slice(2);
if (role in roles) {
  roles[role](...roleArgs);
} else {
  const {values} = parseArgs({
    options: {
      rounds: {type: 'string'},
      warmup: {type: 'string'},
      engine: {type: 'string'},
      model: {type: 'string'},
      out: {type: 'string'},
      help: {type: 'boolean', short: 'h'},
    },
  });
  if (values.help) {
    process.stdout.write(
      'usage: node bench/relay-floor.mjs [--rounds 2000] [--warmup 1000] [--engine http://127.0.0.1:PORT [--model NAME]] [--out file.json]\n',
    );
    process.exit(0);
  }
  const rounds = Number(values.rounds ?? 2000);
  const warmup = Number(values.warmup ?? 1000);
  if (!Number.isInteger(rounds) || rounds < 10 || !Number.isInteger(warmup) || warmup < 0) {
    process.stderr.write('relay-floor: --rounds must be an integer ≥ 10 and --warmup one ≥ 0\n');
    process.exit(2);
  }
  let external;
  if (values.engine !== undefined) {
    try {
      external = new URL(values.engine);
    } catch {
      external = undefined;
    }
    if (external?.protocol !== 'http:' || external.port === '') {
      process.stderr.write('relay-floor: --engine must be an http:// URL with a port (an OpenAI-compatible server: POST /v1/completions, streamed)\n');
      process.exit(2);
    }
  }
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'rbee-relay-floor-'));
  const children = [];
  const start = args =>
    new Promise((resolve, reject) => {
      const child = spawn(process.execPath, [process.argv[1], ...args], {stdio: ['ignore', 'inherit', 'inherit', 'ipc']});
      children.push(child);
      child.once('message', where => resolve(where));
      child.once('exit', code => reject(new Error(`${args[0]} exited with ${code}`)));
    });
  const cleanup = () => {
    for (const child of children) {
      child.kill();
    }
    fs.rmSync(dir, {recursive: true, force: true});
  };
  process.on('exit', cleanup);
  try {
    const engine = external?.origin ?? `http://127.0.0.1:${await start(['engine'])}`;
    const pipe = `http://127.0.0.1:${await start(['pipe', engine])}`;
    const socketPath = await start(['worker', engine, path.join(dir, 'worker.sock')]);
    const hive = `http://127.0.0.1:${await start(['hive', socketPath])}`;
    const agent = new http.Agent({keepAlive: true, maxSockets: 1});
    const body = JSON.stringify({model: values.model, prompt: 'The honey bee is a social insect', max_tokens: 4, stream: true});
    // A kept connection the server closed after its last answer (llama-server does) resets the next
    // request before it is read: that request is sent again, once, on a new connection, and timed from there.
    const ttft = (origin, retried = false) =>
      new Promise((resolve, reject) => {
        const sent = performance.now();
        const asked = http.request(`${origin}/v1/completions`, {method: 'POST', agent, headers: {'content-type': 'application/json'}}, response => {
          let first;
          response.on('data', () => {
            first ??= performance.now() - sent;
          });
          response.on('end', () => (first === undefined ? reject(new Error(`${origin}: an empty answer`)) : resolve(first)));
          response.on('error', reject);
        });
        asked.on('error', error => {
          if (!retried && asked.reusedSocket && error.code === 'ECONNRESET') {
            ttft(origin, true).then(resolve, reject);
          } else {
            reject(error);
          }
        });
        asked.setTimeout(10_000, () => asked.destroy(new Error(`${origin}: no answer in 10 s`)));
        asked.end(body);
      });
    const sides = {straight: engine, pipe, 'lean relay': hive};
    const samples = {straight: [], pipe: [], 'lean relay': []};
    const names = Object.keys(sides);
    for (let round = 0; round < warmup + rounds; round++) {
      // Alternate the order so that no side always follows the same one.
      for (const name of round % 2 === 0 ? names : [...names].reverse()) {
        const ms = await ttft(sides[name]);
        if (round >= warmup) {
          samples[name].push(ms);
        }
      }
    }
    const median = list => {
      const sorted = [...list].sort((a, b) => a - b);
      const middle = sorted.length >> 1;
      return sorted.length % 2 === 1 ? sorted[middle] : (sorted[middle - 1] + sorted[middle]) / 2;
    };
    const paired = name => median(samples[name].map((ms, round) => ms - samples.straight[round]));
    const result = {
      date: new Date().toISOString(),
      node: process.version,
      cpu: `${os.cpus()[0]?.model ?? 'unknown'} × ${os.availableParallelism()}`,
      engine: external === undefined ? 'built in (answers at once)' : external.origin,
      rounds,
      warmup,
      ttft_median_ms: Object.fromEntries(names.map(name => [name, Number(median(samples[name]).toFixed(3))])),
      added_paired_ms: {pipe: Number(paired('pipe').toFixed(3)), 'lean relay': Number(paired('lean relay').toFixed(3))},
    };
    process.stdout.write(
      `TTFT medians over ${rounds} rounds (ms): straight ${result.ttft_median_ms.straight}, one byte pipe ${result.ttft_median_ms.pipe}, ` +
        `lean two-process relay ${result.ttft_median_ms['lean relay']}\n` +
        `added, paired by round: one byte pipe +${result.added_paired_ms.pipe} ms, lean two-process relay +${result.added_paired_ms['lean relay']} ms\n`,
    );
    if (values.out !== undefined) {
      fs.writeFileSync(values.out, `${JSON.stringify(result, null, 2)}\n`);
    }
  } finally {
    cleanup();
  }
  process.exit(0);
}
