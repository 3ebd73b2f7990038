/**
 * A stand-in hive for bench/dashboard.ts: GET /v1/events (SSE) with a snapshot of N simulated
 * workers, then each worker's heartbeat once per interval, spread evenly (worker k at k/N of each
 * interval); GET /v1/status with one CPU and two GPUs. Loopback only. Run as its own process, so its
 * CPU is not the dashboard's:
 *
 *   node --import tsx bench/lib/stub-hive-events.ts <workers> <interval-ms>
 *
 * prints {"url", "pid"} on its first line. Every event is valid against HiveEventSchema.
 */
import http from 'node:http';
import type {Heartbeat, HiveEvent, HiveStatus, WorkerInfo} from '../../src/protocol/wire.js';
import {workerInfo} from '../../test/helpers/wire-fixtures.js';

const workers = Number(process.argv[2] ?? 500);
const intervalMs = Number(process.argv[3] ?? 1_000);
const gib = 1024 ** 3;
const startedAt = Date.now();
const devices = ['cpu', 'cuda:0', 'cuda:1'];
const models = ['gemma-3-270m-q4_k_m', 'qwen2.5-0.5b-instruct-q4_k_m', 'llama-3.2-1b-instruct-q8_0', 'sdxl-turbo'];

type Sim = {info: WorkerInfo; requests: number; tokens: number; rate: number};

const sims: Sim[] = Array.from({length: workers}, (_, index) => {
  const id = `worker-${index.toString(16).padStart(8, '0')}`;
  const device = devices[index % devices.length]!;
  const workflow = index % 50 === 7;
  return {
    info: workerInfo({
      worker_id: id,
      type: workflow ? 'comfyui' : index % 5 === 0 ? 'vllm' : 'llamacpp',
      model: models[index % models.length]!,
      model_path: `/models/${models[index % models.length]}.gguf`,
      device,
      pid: 10_000 + index,
      port: 40_000 + index,
      url: `http://127.0.0.1:${40_000 + index}`,
      started_at: new Date(startedAt - index * 1_000).toISOString(),
      // Workers 20..23: one group (see heartbeatOf), as the hive's records say.
      group_id: index >= 20 && index < 24 ? 'group-bench' : null,
      role: index === 20 ? 'coordinator' : index > 20 && index < 24 ? 'shard' : null,
    }),
    requests: index * 3,
    tokens: index * 300,
    rate: (index * 7) % 80,
  };
});

function heartbeatOf(sim: Sim, index: number): Heartbeat {
  sim.rate = Math.max(0, Math.min(120, sim.rate + (Math.random() - 0.5) * 20));
  sim.requests += Math.random() < 0.3 ? 1 : 0;
  sim.tokens += Math.round(sim.rate);
  const gpu = sim.info.device !== 'cpu';
  const heartbeat: Heartbeat = {
    worker_id: sim.info.worker_id,
    status: 'ready',
    model: sim.info.model,
    device: sim.info.device,
    vram_used: gpu ? 2 * gib + (index % 7) * 256 * 1024 ** 2 : 0,
    vram_total: gpu ? 80 * gib : 0,
    ram_used: 700 * 1024 ** 2 + index * 1024,
    requests_total: sim.requests,
    tokens_generated: sim.tokens,
    uptime_seconds: Math.round((Date.now() - startedAt) / 1_000) + index,
    last_request_at: null,
    adapter_type: sim.info.type,
    backend: gpu ? 'cuda' : 'cpu',
    threads: 1,
    batch_size: Math.floor(Math.random() * 4),
    queue_depth: Math.random() < 0.2 ? Math.floor(Math.random() * 5) : 0,
    throughput_tokens_per_second: Math.round(sim.rate * 10) / 10,
  };
  if (sim.info.type === 'comfyui') {
    heartbeat.current_workflow = 'txt2img';
    heartbeat.workflow_progress = {prompt_id: `p-${index}`, current_node: 'KSampler', progress: (Date.now() / 10_000) % 1};
  }
  // Workers 20..23: one group, a coordinator and three shards.
  if (index >= 20 && index < 24) {
    heartbeat.group_id = 'group-bench';
    heartbeat.role = index === 20 ? 'coordinator' : 'shard';
    if (index === 20) {
      heartbeat.group_health = 'healthy';
    } else {
      heartbeat.coordinator = sims[20]!.info.worker_id;
    }
  }
  return heartbeat;
}

const status: HiveStatus = {
  version: '0.1.0-bench',
  pid: process.pid,
  uptime_seconds: 0,
  url: '',
  workers: {ready: workers},
  models,
  devices: [
    {id: 'cpu', name: 'bench CPU', memory_total: 64 * gib, memory_used: 21 * gib},
    {id: 'cuda:0', name: 'bench GPU', memory_total: 80 * gib, memory_used: 51 * gib},
    {id: 'cuda:1', name: 'bench GPU', memory_total: 80 * gib, memory_used: 47 * gib},
  ],
};

const server = http.createServer((request, response) => {
  if (request.url === '/v1/status') {
    response.writeHead(200, {'content-type': 'application/json'});
    response.end(JSON.stringify({...status, uptime_seconds: Math.round((Date.now() - startedAt) / 1_000)}));
    return;
  }
  if (request.url !== '/v1/events') {
    response.writeHead(404, {'content-type': 'application/json'});
    response.end('{"error":{"code":"not_found","message":"stub"}}');
    return;
  }
  response.writeHead(200, {'content-type': 'text/event-stream', 'cache-control': 'no-cache', connection: 'keep-alive'});
  const snapshot: HiveEvent = {
    type: 'snapshot',
    at: new Date().toISOString(),
    hive: {url: status.url, pid: process.pid, version: status.version},
    workers: sims.map(sim => sim.info),
    groups: [],
  };
  response.write(`data: ${JSON.stringify(snapshot)}\n\n`);
  // Every 10 ms, the heartbeats that fell due since the last tick, each its own event.
  const offset = Math.floor(((Date.now() % intervalMs) / intervalMs) * workers);
  let sent = offset;
  const began = performance.now();
  const tick = setInterval(() => {
    const due = offset + Math.floor(((performance.now() - began) / intervalMs) * workers);
    let frames = '';
    for (; sent < due; sent++) {
      const index = sent % workers;
      const heartbeat = heartbeatOf(sims[index]!, index);
      const event: HiveEvent = {type: 'heartbeat', at: new Date().toISOString(), worker_id: heartbeat.worker_id, heartbeat};
      frames += `data: ${JSON.stringify(event)}\n\n`;
    }
    if (frames !== '' && !response.writableNeedDrain) {
      response.write(frames);
    }
  }, 10);
  request.socket.on('close', () => clearInterval(tick));
});

server.listen(0, '127.0.0.1', () => {
  const address = server.address() as {port: number};
  status.url = `http://127.0.0.1:${address.port}`;
  process.stdout.write(`${JSON.stringify({url: status.url, pid: process.pid})}\n`);
});

for (const signal of ['SIGTERM', 'SIGINT'] as const) {
  process.once(signal, () => {
    server.closeAllConnections();
    server.close(() => process.exit(0));
  });
}
