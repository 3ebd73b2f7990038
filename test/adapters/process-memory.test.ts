/** Engine memory for adapters' heartbeats: RAM from /proc, VRAM from nvidia-smi's per-process table (a stand-in here). */
import {spawn} from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import test from 'ava';
import {processRss} from '../../src/adapters/engine-http.js';
import {engineMemory, groupVram, processTree, processTreeRss} from '../../src/adapters/process-memory.js';
import {tempHome} from '../helpers/rbee-process.js';

/** STAND-IN for nvidia-smi: this test process (its own group) holds 1500 MiB on the card, init (another group) 700 MiB. */
function withFakeNvidiaSmi<T>(run: () => Promise<T>): Promise<T> {
  const bin = tempHome('rbee-fake-nvidia-smi-');
  const fake = path.join(bin, 'nvidia-smi');
  fs.writeFileSync(
    fake,
    `#!/bin/sh
case "$1" in
  --query-compute-apps=*) printf '${process.pid}, 1500\\n1, 700\\n' ;;
  --query-gpu=memory.total) printf '81559\\n' ;;
  *) exit 2 ;;
esac
`,
    {mode: 0o755},
  );
  const previous = process.env.RBEE_NVIDIA_SMI;
  process.env.RBEE_NVIDIA_SMI = fake;
  return run().finally(() => {
    if (previous === undefined) {
      delete process.env.RBEE_NVIDIA_SMI;
    } else {
      process.env.RBEE_NVIDIA_SMI = previous;
    }
  });
}

test.serial("VRAM on CUDA is what nvidia-smi lists for the engine's process group, and the card's total", async t => {
  await withFakeNvidiaSmi(async () => {
    t.deepEqual(await groupVram(process.pid, 0), {used: 1500 * 1024 * 1024, total: 81_559 * 1024 * 1024});
  });
});

test.serial('engineMemory: RAM of the process tree everywhere, VRAM only on a cuda device', async t => {
  await withFakeNvidiaSmi(async () => {
    const onGpu = await engineMemory(process.pid, 'cuda:0');
    t.is(onGpu.vram_used, 1500 * 1024 * 1024);
    t.is(onGpu.vram_total, 81_559 * 1024 * 1024);
    t.true((onGpu.ram_used ?? 0) > 10 * 1024 * 1024);
    const onCpu = await engineMemory(process.pid, 'cpu');
    t.is(onCpu.vram_used, undefined, 'no VRAM figure is made up for the CPU');
    t.true((onCpu.ram_used ?? 0) > 10 * 1024 * 1024);
  });
});

test('the process tree holds the process and its children; a gone process has no RSS', async t => {
  const child = spawn('sleep', ['30'], {stdio: 'ignore'});
  try {
    await new Promise(resolve => child.once('spawn', resolve));
    const tree = processTree(process.pid);
    t.is(tree[0], process.pid);
    t.true(tree.includes(child.pid!), 'a child is part of the tree');
    const own = await processRss(process.pid);
    t.true(((await processTreeRss(process.pid)) ?? 0) > (own ?? 0), "the tree's RSS counts the child too");
  } finally {
    child.kill('SIGKILL');
  }
  t.is(await processTreeRss(2 ** 22 + 12_345), undefined);
});
