import os from 'node:os';
import path from 'node:path';
import {resolveModel} from '../../src/models/resolve-model.js';

/**
 * The real default model (Gemma 3 270M Q4_K_M), assembled once into a cache shared by all test
 * files and CI runs, so each test's fresh RBEE_HOME does not download it again.
 */
export const sharedModelsDir = process.env.RBEE_TEST_MODELS_DIR ?? path.join(os.homedir(), '.cache', 'rbee', 'models');

export async function defaultModelPath(): Promise<string> {
  const model = await resolveModel('default', {modelsDir: sharedModelsDir});
  return model.path;
}
