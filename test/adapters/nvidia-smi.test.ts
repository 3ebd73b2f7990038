/**
 * The one nvidia-smi reader, asked of a STAND-IN nvidia-smi (test/helpers/fake-nvidia-smi.ts)
 * through RBEE_NVIDIA_SMI: the adapters' figures and the hive's device list both follow it.
 */
import fs from 'node:fs';
import path from 'node:path';
import test from 'ava';
import {gpuFreeMemory, gpuTotalMemory, nvidiaComputeApps, nvidiaGpus, nvidiaSmiProgram} from '../../src/adapters/nvidia-smi.js';
import {listDevices} from '../../src/hive/devices.js';
import {fakeNvidiaSmi} from '../helpers/fake-nvidia-smi.js';
import {tempHome} from '../helpers/rbee-process.js';

const mib = 1024 * 1024;
const fake = fakeNvidiaSmi({
  gpus: [
    {name: 'NVIDIA H100 80GB HBM3', totalMiB: 81_559, usedMiB: 1_000},
    {name: 'NVIDIA H100 80GB HBM3', totalMiB: 81_559, usedMiB: 60_000},
  ],
  apps: [
    {pid: 4242, usedMiB: 1_500},
    {pid: 4343, usedMiB: 700},
  ],
});

function withProgram<T>(program: string | undefined, run: () => Promise<T>): Promise<T> {
  const previous = process.env.RBEE_NVIDIA_SMI;
  if (program === undefined) {
    delete process.env.RBEE_NVIDIA_SMI;
  } else {
    process.env.RBEE_NVIDIA_SMI = program;
  }
  return run().finally(() => {
    if (previous === undefined) {
      delete process.env.RBEE_NVIDIA_SMI;
    } else {
      process.env.RBEE_NVIDIA_SMI = previous;
    }
  });
}

test.serial('RBEE_NVIDIA_SMI names the program; unset or empty, nvidia-smi on PATH', t => {
  t.is(nvidiaSmiProgram({RBEE_NVIDIA_SMI: '/opt/nv/nvidia-smi'}), '/opt/nv/nvidia-smi');
  t.is(nvidiaSmiProgram({RBEE_NVIDIA_SMI: ''}), 'nvidia-smi');
  t.is(nvidiaSmiProgram({}), 'nvidia-smi');
});

test.serial('cards, free and total memory, and per-process memory come from the program RBEE_NVIDIA_SMI names', async t => {
  await withProgram(fake, async () => {
    t.deepEqual(await nvidiaGpus(), [
      {index: 0, name: 'NVIDIA H100 80GB HBM3', memoryTotal: 81_559 * mib, memoryUsed: 1_000 * mib},
      {index: 1, name: 'NVIDIA H100 80GB HBM3', memoryTotal: 81_559 * mib, memoryUsed: 60_000 * mib},
    ]);
    t.is(await gpuFreeMemory(1), 21_559 * mib);
    t.is(await gpuTotalMemory(0), 81_559 * mib);
    t.is(await gpuFreeMemory(5), undefined, 'a card nvidia-smi does not have: no figure');
    t.deepEqual(await nvidiaComputeApps(), [
      {pid: 4242, usedMemory: 1_500 * mib},
      {pid: 4343, usedMemory: 700 * mib},
    ]);
  });
});

test.serial('the hive lists the cards of the same reader as cuda devices', async t => {
  await withProgram(fake, async () => {
    const devices = await listDevices();
    t.like(
      devices.find(device => device.id === 'cuda:1'),
      {name: 'NVIDIA H100 80GB HBM3', memory_total: 81_559 * mib, memory_used: 60_000 * mib},
    );
    t.is(devices[0]?.id, 'cpu');
  });
});

test.serial('a missing or failing nvidia-smi gives no figures, never made-up ones', async t => {
  const missing = path.join(tempHome('rbee-no-nvidia-smi-'), 'nvidia-smi');
  await withProgram(missing, async () => {
    t.deepEqual(await nvidiaGpus(), []);
    t.is(await gpuFreeMemory(0), undefined);
    t.is(await nvidiaComputeApps(), null);
    t.deepEqual(
      (await listDevices()).map(device => device.id).filter(id => id.startsWith('cuda:')),
      [],
    );
  });
  const failing = path.join(tempHome('rbee-failing-nvidia-smi-'), 'nvidia-smi');
  fs.writeFileSync(failing, '#!/bin/sh\necho "NVIDIA-SMI has failed because it couldn\'t communicate with the NVIDIA driver" >&2\nexit 9\n', {mode: 0o755});
  await withProgram(failing, async () => {
    t.deepEqual(await nvidiaGpus(), []);
    t.is(await gpuTotalMemory(0), undefined);
  });
});
