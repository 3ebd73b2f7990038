/**
 * Changes to a user's config file made by commands (`rbee adapter add/remove`). Only data files
 * (JSON, YAML) are rewritten; a .ts/.js config is code, so the command says what line to add instead.
 */
import fs from 'node:fs';
import path from 'node:path';
import * as yaml from 'js-yaml';
import {RbeeError} from '../errors.js';

const dataFormats = new Map<string, 'json' | 'yaml'>([
  ['.json', 'json'],
  ['.yaml', 'yaml'],
  ['.yml', 'yaml'],
  ['', 'yaml'],
]);

export function isEditableConfig(file: string): boolean {
  return dataFormats.has(path.extname(file)) && path.basename(file) !== 'package.json';
}

/** Reads the raw (unvalidated) data of a config file, edits it, and writes it back in the same format. */
export function editConfigFile(file: string, edit: (data: Record<string, unknown>) => void): void {
  const format = dataFormats.get(path.extname(file));
  if (format === undefined || path.basename(file) === 'package.json') {
    throw new RbeeError('invalid_request', `${file} is code, not data: rbee does not rewrite it; edit its \`adapters\` list by hand`);
  }
  const text = fs.existsSync(file) ? fs.readFileSync(file, 'utf8') : '';
  const parsed: unknown = text.trim() === '' ? {} : format === 'json' ? JSON.parse(text) : yaml.load(text);
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) {
    throw new RbeeError('invalid_request', `${file} does not hold an object`);
  }
  const data = parsed as Record<string, unknown>;
  edit(data);
  const output = format === 'json' ? `${JSON.stringify(data, null, 2)}\n` : yaml.dump(data);
  // Write beside and rename: a crash mid-write never leaves half a config.
  // A new file (the home's config) is private like everything under RBEE_HOME; an existing one keeps its mode.
  const mode = fs.existsSync(file) ? fs.statSync(file).mode & 0o777 : 0o600;
  fs.mkdirSync(path.dirname(file), {recursive: true, mode: 0o700});
  const temporary = `${file}.${process.pid}.tmp`;
  fs.writeFileSync(temporary, output, {mode});
  fs.chmodSync(temporary, mode);
  fs.renameSync(temporary, file);
}
