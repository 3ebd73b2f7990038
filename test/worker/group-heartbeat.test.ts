/** The group part of a member's heartbeat: the coordinator asks its shards' workers and sums device memory per device. */
import http from 'node:http';
import type {AddressInfo} from 'node:net';
import test from 'ava';
import {freePort} from '../../src/http/free-port.js';
import type {GroupMembership} from '../../src/protocol/wire.js';
import {adapterGroup, groupHeartbeatFields} from '../../src/worker/group-heartbeat.js';

const gib = 2 ** 30;

/** A shard worker's /health, as the worker server answers it. */
async function shardServer(status: number, body: unknown): Promise<{url: string; close: () => void}> {
  const server = http.createServer((_request, response) => {
    response.writeHead(status, {'content-type': 'application/json'}).end(JSON.stringify(body));
  });
  await new Promise<void>(resolve => server.listen(0, '127.0.0.1', resolve));
  return {url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, close: () => server.close()};
}

function membership(shards: Array<{device: string; url: string}>): GroupMembership {
  return {
    group_id: 'group-1',
    role: 'coordinator',
    coordinator: 'group-1-0',
    devices: ['cuda:0', ...shards.map(shard => shard.device)],
    endpoint: null,
    shards: shards.map((shard, index) => ({worker_id: `group-1-${index + 1}`, device: shard.device, url: shard.url, endpoint: `127.0.0.1:${6000 + index}`})),
  };
}

test("coordinator: each shard's health and the memory per device; a shard that does not answer is missing and the group degraded", async t => {
  const ready = await shardServer(200, {status: 'ready', worker_id: 'group-1-1', model: 'm', vram_used: 3 * gib, vram_total: 80 * gib});
  const loading = await shardServer(503, {status: 'starting', worker_id: 'group-1-2', model: 'm'});
  const gone = `http://127.0.0.1:${await freePort()}`;
  try {
    const fields = await groupHeartbeatFields(
      membership([
        {device: 'cuda:1', url: ready.url},
        {device: 'cuda:2', url: loading.url},
        {device: 'cuda:3', url: gone},
      ]),
      true,
      {vram_used: 2 * gib, vram_total: 80 * gib},
    );
    t.like(fields, {group_id: 'group-1', role: 'coordinator', devices: ['cuda:0', 'cuda:1', 'cuda:2', 'cuda:3'], group_health: 'degraded'});
    t.deepEqual(fields.shard_workers, [
      {worker_id: 'group-1-1', status: 'healthy'},
      {worker_id: 'group-1-2', status: 'starting'},
      {worker_id: 'group-1-3', status: 'missing'},
    ]);
    t.deepEqual(fields.vram_per_device, {'cuda:0': 2 * gib, 'cuda:1': 3 * gib}, 'only devices whose member said');
    t.is(fields.vram_total, 160 * gib);
  } finally {
    ready.close();
    loading.close();
  }
});

test('coordinator: all shards healthy on the CPU: healthy, and no device memory made up', async t => {
  const shard = await shardServer(200, {status: 'ready', worker_id: 'group-1-1', model: 'm', vram_used: 0, vram_total: 0});
  try {
    const fields = await groupHeartbeatFields({...membership([{device: 'cpu', url: shard.url}]), devices: ['cpu', 'cpu']}, true, null);
    t.is(fields.group_health, 'healthy');
    t.is(fields.vram_per_device, undefined);
  } finally {
    shard.close();
  }
});

test('a coordinator still loading asks nobody; a shard names its group and coordinator', async t => {
  t.deepEqual(await groupHeartbeatFields(membership([{device: 'cuda:1', url: 'http://127.0.0.1:9'}]), false, null), {
    group_id: 'group-1',
    role: 'coordinator',
    devices: ['cuda:0', 'cuda:1'],
  });
  t.deepEqual(await groupHeartbeatFields({...membership([]), devices: ['cuda:0', 'cuda:1'], role: 'shard', endpoint: '127.0.0.1:6000'}, false, null), {
    group_id: 'group-1',
    role: 'shard',
    coordinator: 'group-1-0',
  });
});

test("the adapter's view of a membership: its rank, and the launch's secret given apart from the membership (argv is world-readable)", t => {
  const coordinator = adapterGroup({...membership([{device: 'cpu', url: 'http://127.0.0.1:1'}]), rank: 0}, 'launch-secret');
  t.is(coordinator.rank, 0);
  t.is(coordinator.secret, 'launch-secret');
  t.deepEqual(coordinator.shards, [{workerId: 'group-1-1', device: 'cpu', endpoint: '127.0.0.1:6000'}]);
  const shard = adapterGroup({
    group_id: 'group-1',
    role: 'shard',
    rank: 2,
    coordinator: 'group-1-0',
    devices: ['cpu', 'cpu', 'cpu'],
    endpoint: '127.0.0.1:6001',
    shards: [],
  });
  t.is(shard.rank, 2);
  t.is(shard.secret, '', 'none given');
  t.is(adapterGroup({group_id: 'group-1', role: 'shard', coordinator: 'group-1-0', devices: ['cpu', 'cpu'], endpoint: '127.0.0.1:6001', shards: []}).rank, -1);
});
