import fs from 'node:fs';
import path from 'node:path';
import {fileURLToPath} from 'node:url';
import test from 'ava';
import {loadConfig} from '../../src/config/load-config.js';
import {tempHome} from '../helpers/rbee-process.js';

const example = fileURLToPath(new URL('../../rbee.config.example.ts', import.meta.url));

test('rbee.config.example.ts loads through jiti (no TypeScript needed) and validates', async t => {
  const {config, filepath} = await loadConfig({explicitPath: example});
  t.is(filepath, example);
  t.is(config.hive.port, 7833);
  t.is(config.workers.parallel, 4);
});

test('a config is found from a subfolder, and an empty search gives the defaults', async t => {
  const root = tempHome('rbee-config-');
  fs.writeFileSync(path.join(root, 'rbee.config.json'), JSON.stringify({hive: {port: 9999}}));
  fs.mkdirSync(path.join(root, 'deeper'));
  t.is((await loadConfig({cwd: path.join(root, 'deeper')})).config.hive.port, 9999);
  const empty = tempHome('rbee-config-empty-');
  const none = await loadConfig({cwd: empty});
  t.deepEqual(none.config, {hive: {}, workers: {}, adapters: [], models: {}, types: {}});
});

const rejects = test.macro(async (t, file: string, content: string, expected: RegExp) => {
  const root = tempHome('rbee-config-bad-');
  const filepath = path.join(root, file);
  fs.writeFileSync(filepath, content);
  const error = await t.throwsAsync(loadConfig({explicitPath: filepath}));
  t.true(error?.message.includes(filepath), `names the file: ${error?.message}`);
  t.regex(error?.message ?? '', expected);
});

test('a misspelt key is named', rejects, 'rbee.config.json', JSON.stringify({hive: {prot: 1}}), /prot/);
test('a wrong type is named with its path', rejects, 'rbee.config.yaml', 'workers:\n  threads: many\n', /`workers\.threads`/);
test('a TypeScript config with a bad value', rejects, 'rbee.config.ts', 'export default {hive: {port: -1}};\n', /`hive\.port`/);
test('a file that does not parse', rejects, 'rbee.config.json', '{"hive": ', /failed to load: /);
test(
  "a TypeScript config that does not compile: the compiler's line and its position, not the loader's heading",
  rejects,
  'rbee.config.ts',
  'const port: number = ;\nexport default {hive: {port}};\n',
  /failed to load: ParseError: Unexpected token \(at .*rbee\.config\.ts:1:\d+\)/,
);
test(
  "a TypeScript config that throws: its error's message",
  rejects,
  'rbee.config.ts',
  'throw new Error("no GPU named in RBEE_GPUS");\nexport default {};\n',
  /failed to load: no GPU named in RBEE_GPUS$/,
);
test(
  "a catalogue entry on an engine's own model (engine:<name>) is refused: no file to plan room with",
  rejects,
  'rbee.config.json',
  JSON.stringify({models: {llama: {model: 'engine:llama3.2:1b', type: 'ollama'}}}),
  /`models\.llama\.model`.*engine:<name> models can be spawned by hand, not put in the catalogue/,
);
