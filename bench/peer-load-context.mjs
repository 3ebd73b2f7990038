// The spawn-ready peer: a fresh Node process that does only what an rbee worker's engine does to
// get ready (node-llama-cpp, CPU backend, the same GGUF, one context of the same size and threads),
// with no CLI, HTTP server or hive around it. Plain JavaScript, like rbee's compiled dist/, so
// neither side pays for a TypeScript loader. It prints "ready" once the context exists, frees
// everything and exits on SIGTERM, and exits by itself if its parent goes away.
//   node bench/peer-load-context.mjs <model.gguf> <context-size> <threads>
import {getLlama, LlamaLogLevel} from 'node-llama-cpp';

const [modelPath, contextSize, threads] = process.argv.slice(2);
if (modelPath === undefined || contextSize === undefined || threads === undefined) {
  process.stderr.write('usage: peer-load-context.mjs <model.gguf> <context-size> <threads>\n');
  process.exit(2);
}
// Bounded: never outlive the benchmark.
const selfDestruct = setTimeout(() => process.exit(3), 300_000);
process.stdin.on('close', () => process.exit(4));
process.stdin.resume();

// Same options as src/worker/engines/llamacpp-embedded.ts (logging options only silence output).
const llama = await getLlama({gpu: false, build: 'never', logLevel: LlamaLogLevel.error, progressLogs: false});
const model = await llama.loadModel({modelPath, gpuLayers: 0});
const context = await model.createContext({contextSize: Number(contextSize), sequences: 1, threads: Number(threads)});
context.getSequence();
process.stdout.write('ready\n');

process.once('SIGTERM', async () => {
  clearTimeout(selfDestruct);
  await context.dispose();
  await model.dispose();
  await llama.dispose();
  process.exit(0);
});
