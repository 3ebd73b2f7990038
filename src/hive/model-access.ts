import fs from 'node:fs';
import path from 'node:path';
import {RbeeError} from '../errors.js';

/**
 * Which model files the hive will open. With folders configured (or whenever the hive serves
 * beyond loopback) a path must resolve, symlinks followed, inside one of them: a request cannot
 * walk out with `..` or a link. A loopback hive with none configured serves any GGUF its user can read.
 */
export function checkModelPath(modelPath: string, allowedDirs: readonly string[] | null): string {
  let real: string;
  try {
    real = fs.realpathSync(modelPath);
  } catch (error) {
    throw new RbeeError('model_not_found', `model file not found: ${modelPath}`, {cause: error});
  }
  if (allowedDirs === null) {
    return real;
  }
  const inside = allowedDirs.some(dir => {
    let realDir: string;
    try {
      realDir = fs.realpathSync(dir);
    } catch {
      return false;
    }
    const relative = path.relative(realDir, real);
    return relative !== '' && !relative.startsWith('..') && !path.isAbsolute(relative);
  });
  if (!inside) {
    throw new RbeeError('invalid_request', `model path ${modelPath} is outside the allowed model folders (${allowedDirs.join(', ')})`);
  }
  return real;
}
