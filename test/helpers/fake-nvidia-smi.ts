/**
 * A STAND-IN for nvidia-smi (the GPU driver's tool, not rbee's code), set through RBEE_NVIDIA_SMI:
 * a shell script answering the CSV queries rbee asks, for a machine with the given cards and the
 * given processes holding memory on them. Figures in MiB, as nvidia-smi prints them.
 */
import fs from 'node:fs';
import path from 'node:path';
import {tempHome} from './rbee-process.js';

export type FakeGpu = {name: string; totalMiB: number; usedMiB: number};

export function fakeNvidiaSmi(options: {gpus: FakeGpu[]; apps?: Array<{pid: number; usedMiB: number}>}): string {
  const dir = tempHome('rbee-fake-nvidia-smi-');
  const file = path.join(dir, 'nvidia-smi');
  const rows = (lines: string[]) => `printf '${lines.map(line => `${line}\\n`).join('')}'`;
  const card = (pick: (gpu: FakeGpu) => number) => options.gpus.map((gpu, index) => `    ${index}) printf '${pick(gpu)}\\n' ;;`).join('\n');
  fs.writeFileSync(
    file,
    `#!/bin/sh
# the card asked with -i N, wherever it is among the arguments
index=''
previous=''
for arg in "$@"; do
  if [ "$previous" = '-i' ]; then index="$arg"; fi
  previous="$arg"
done
case "$1" in
  --query-gpu=index,name,memory.total,memory.used) ${rows(options.gpus.map((gpu, index) => `${index}, ${gpu.name}, ${gpu.totalMiB}, ${gpu.usedMiB}`))} ;;
  --query-gpu=memory.free)
    case "$index" in
${card(gpu => gpu.totalMiB - gpu.usedMiB)}
      *) echo "No devices were found" >&2; exit 6 ;;
    esac ;;
  --query-gpu=memory.total)
    case "$index" in
${card(gpu => gpu.totalMiB)}
      *) echo "No devices were found" >&2; exit 6 ;;
    esac ;;
  --query-compute-apps=pid,used_memory) ${rows((options.apps ?? []).map(app => `${app.pid}, ${app.usedMiB}`))} ;;
  *) echo "unknown query $1" >&2; exit 2 ;;
esac
`,
    {mode: 0o755},
  );
  return file;
}
