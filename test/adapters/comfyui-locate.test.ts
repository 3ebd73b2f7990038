/** Where the comfyui adapter finds ComfyUI and its python, and what it says when there is none. */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import test from 'ava';
import comfyui, {ComfyUiOptionsSchema, classifyFolder, locateComfyUi} from '../../adapters/comfyui/src/index.js';

function folder(files: string[]): string {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'rbee-comfy-locate-'));
  for (const file of files) {
    fs.mkdirSync(path.dirname(path.join(root, file)), {recursive: true});
    fs.writeFileSync(path.join(root, file), '');
  }
  return root;
}

const emptyCache = {RBEE_CACHE_DIR: fs.mkdtempSync(path.join(os.tmpdir(), 'rbee-comfy-cache-'))};
const defaults = ComfyUiOptionsSchema.parse({});

test('a ComfyUI checkout (with its own venv), a venv, an rbee install: each is told apart', t => {
  const checkout = folder(['main.py', 'comfy/model_management.py', 'venv/bin/python']);
  t.deepEqual(classifyFolder(checkout), {comfyDir: checkout, python: path.join(checkout, 'venv', 'bin', 'python')});
  const venv = folder(['pyvenv.cfg', 'bin/python']);
  t.deepEqual(classifyFolder(venv), {python: path.join(venv, 'bin', 'python')});
  const install = folder(['venv/bin/python', 'comfyui/main.py']);
  t.deepEqual(classifyFolder(install), {python: path.join(install, 'venv', 'bin', 'python'), comfyDir: path.join(install, 'comfyui')});
  t.deepEqual(classifyFolder(folder(['weights.safetensors'])), {});
});

test('--model names the checkout, RBEE_COMFYUI the venv: each half from the first that names it', t => {
  const checkout = folder(['main.py', 'comfy/x.py']);
  const venv = folder(['pyvenv.cfg', 'bin/python']);
  const launch = locateComfyUi(defaults, checkout, {...emptyCache, RBEE_COMFYUI: venv});
  t.is(launch.comfyDir, checkout);
  t.is(launch.python, path.join(venv, 'bin', 'python'));
  // The adapter's own options come first.
  const other = folder(['main.py', 'comfy/x.py']);
  t.is(locateComfyUi(ComfyUiOptionsSchema.parse({comfyDir: other}), checkout, {...emptyCache, RBEE_COMFYUI: venv}).comfyDir, other);
});

test('nothing installed: one line naming the exact install command', t => {
  const error = t.throws(() => locateComfyUi(defaults, folder(['weights.safetensors']), emptyCache));
  t.is(error?.message.split('\n').length, 1);
  t.regex(error?.message ?? '', /ComfyUI is not installed: run `rbee engines install comfyui`/);
  const checkout = folder(['main.py', 'comfy/x.py']);
  t.regex(
    t.throws(() => locateComfyUi(ComfyUiOptionsSchema.parse({python: '/nonexistent/python'}), checkout, emptyCache))?.message ?? '',
    /no python at \/nonexistent\/python/,
  );
});

test('a bad option is refused by the factory, naming it', t => {
  t.throws(() => comfyui({customNodes: 'not-a-list'} as never), {message: /customNodes/});
  t.throws(() => comfyui({colour: 'blue'} as never), {message: /colour/});
});
