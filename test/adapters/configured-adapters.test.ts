/**
 * The adapter a worker runs: a built-in type is loaded alone, with the config's options for it and
 * the worker's own over them; a plugin's type is found among every adapter, as the hive finds it.
 */
import fs from 'node:fs';
import path from 'node:path';
import {fileURLToPath} from 'node:url';
import test from 'ava';
import {tempHome} from '../helpers/rbee-process.js';

const root = fileURLToPath(new URL('../..', import.meta.url));
const echoAdapter = fileURLToPath(new URL('../fixtures/adapter-echo/', import.meta.url));
/** The built-in adapters are built into dist/ (they import the `rbee` package), so they are loaded as a worker loads them. */
const {loadConfiguredAdapter} = (await import(
  new URL('dist/adapters/configured-adapters.js', `file://${root}/`).href
)) as typeof import('../../src/adapters/configured-adapters.js');
const {adapterBackends} = (await import(
  new URL('dist/adapters/adapter-backends.js', `file://${root}/`).href
)) as typeof import('../../src/adapters/adapter-backends.js');

function writeConfig(t: {teardown: (fn: () => void) => void}, config: unknown): string {
  const dir = tempHome('rbee-configured-adapter-');
  t.teardown(() => fs.rmSync(dir, {recursive: true, force: true}));
  const file = path.join(dir, 'rbee.config.json');
  fs.writeFileSync(file, JSON.stringify(config));
  return file;
}

test("a built-in type gets the config's options, and a worker's own over them", async t => {
  const config = writeConfig(t, {types: {ollama: {command: '/nonexistent/config-ollama'}}});
  const fromConfig = await loadConfiguredAdapter('ollama', config, undefined);
  t.is(fromConfig.adapter?.type, 'ollama');
  t.regex(JSON.stringify(await adapterBackends(fromConfig.adapter!)), /config-ollama/);
  const overridden = await loadConfiguredAdapter('ollama', config, {command: '/nonexistent/worker-ollama'});
  t.regex(JSON.stringify(await adapterBackends(overridden.adapter!)), /worker-ollama/);
});

test('a built-in whose options it refuses is not loaded, and says why, as with every adapter loaded', async t => {
  const config = writeConfig(t, {types: {ollama: {keepAlive: 'forever'}}});
  const found = await loadConfiguredAdapter('ollama', config, undefined);
  t.is(found.adapter, null);
  const refused = found.adapter === null ? found.loaded.errors.find(error => error.source === 'built-in ollama') : undefined;
  t.regex(refused?.message ?? '', /keepAlive/);
  t.true(found.adapter === null && found.loaded.adapters.some(loaded => loaded.adapter.type === 'llamacpp'), 'the others load');
});

test("a plugin's type is found among every adapter, with the worker's options", async t => {
  const config = writeConfig(t, {adapters: [echoAdapter]});
  t.is((await loadConfiguredAdapter('echo', config, undefined)).adapter?.name, 'acme:echo');
  t.is((await loadConfiguredAdapter('echo', config, {prefix: '> '})).adapter?.name, 'acme:echo');
  await t.throwsAsync(loadConfiguredAdapter('echo', config, {prefix: 3}), {message: /option `prefix` of acme:echo must be a string/});
  const missing = await loadConfiguredAdapter('nope', config, undefined);
  t.is(missing.adapter, null);
});
