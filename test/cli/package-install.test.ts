/**
 * The package as a user gets it: `npm pack` of this checkout, installed into a fresh folder, and its
 * `rbee` run from there. Offline, from npm's cache as `npm ci` left it: the cache holds tarballs but
 * no registry metadata, so the install is pinned by a lockfile made from ours (what
 * `npm ci` in a project that depends on rbee does). Third-party install scripts are skipped
 * (better-sqlite3 and node-llama-cpp would fetch prebuilt binaries); rbee itself has none to run.
 * The runner has built dist/ already, so `npm pack` runs with --ignore-scripts too: its `prepack`
 * build would rewrite dist/ under the other test files running beside this one.
 */
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import {fileURLToPath} from 'node:url';
import test from 'ava';
import {execa} from 'execa';

const root = fileURLToPath(new URL('../..', import.meta.url));
const manifest = JSON.parse(fs.readFileSync(path.join(root, 'package.json'), 'utf8')) as {version: string; files: string[]; scripts: Record<string, string>};

type LockPackage = {dev?: boolean; link?: boolean; [key: string]: unknown};
type Lockfile = {packages: Record<string, LockPackage>};

/** A project that depends on the tarball alone, locked to the exact versions our lockfile holds. */
function writeProject(dir: string, tarball: string): void {
  const lock = JSON.parse(fs.readFileSync(path.join(root, 'package-lock.json'), 'utf8')) as Lockfile;
  const own = lock.packages['']!;
  const spec = `file:${path.basename(tarball)}`;
  const integrity = `sha512-${crypto.createHash('sha512').update(fs.readFileSync(tarball)).digest('base64')}`;
  const packages: Record<string, unknown> = {
    '': {name: 'rbee-install-check', dependencies: {rbee: spec}},
    'node_modules/rbee': {version: manifest.version, resolved: spec, integrity, dependencies: own.dependencies, bin: own.bin, engines: own.engines},
  };
  for (const [key, entry] of Object.entries(lock.packages)) {
    if (key.startsWith('node_modules/') && entry.dev !== true && entry.link !== true) {
      packages[key] = entry;
    }
  }
  fs.writeFileSync(path.join(dir, 'package.json'), JSON.stringify({name: 'rbee-install-check', private: true, dependencies: {rbee: spec}}));
  fs.writeFileSync(path.join(dir, 'package-lock.json'), JSON.stringify({name: 'rbee-install-check', lockfileVersion: 3, requires: true, packages}));
}

test('npm pack ships what runs (dist, built-in adapters, bin, the native loader) and no tests; installed offline, rbee --help and --version run', async t => {
  t.timeout(360_000);
  t.is(manifest.scripts.prepack, 'npm run build', 'a pack from a clean clone builds dist/ first');
  const work = fs.mkdtempSync(path.join(os.tmpdir(), 'rbee-pack-'));
  t.teardown(() => fs.rmSync(work, {recursive: true, force: true}));

  const packed = await execa('npm', ['pack', '--ignore-scripts', '--json', '--pack-destination', work], {cwd: root, timeout: 120_000});
  const [report] = JSON.parse(packed.stdout) as Array<{filename: string; files: Array<{path: string}>}>;
  const files = new Set(report!.files.map(file => file.path));
  for (const needed of [
    'bin/rbee.js',
    'dist/cli/main.js',
    'dist/index.js',
    'dist/index.d.ts',
    'dist/protocol/index.js',
    'dist/protocol/index.d.ts',
    'dist/testing/index.js',
    'dist/builtin-adapters/llamacpp/src/index.js',
    'dist/builtin-adapters/candle/src/index.js',
    'native/index.js',
    'native/index.d.ts',
    'docs/adapters.md',
  ]) {
    t.true(files.has(needed), `the tarball carries ${needed}`);
  }
  const stray = [...files].filter(file => /^(test|bench|src|scripts|adapters)\//.test(file) || file.endsWith('.map') || file.startsWith('native/src/'));
  t.deepEqual(stray, [], 'no tests, benchmarks, sources or source maps');
  const nativeBuilt = fs.readdirSync(path.join(root, 'native')).some(file => file.endsWith('.node'));
  t.is(
    [...files].some(file => /^native\/[^/]+\.node$/.test(file)),
    nativeBuilt,
    'the candle .node ships exactly when this checkout has built it',
  );

  const project = path.join(work, 'project');
  fs.mkdirSync(project);
  const tarball = path.join(project, report!.filename);
  fs.renameSync(path.join(work, report!.filename), tarball);
  writeProject(project, tarball);
  await execa('npm', ['ci', '--offline', '--ignore-scripts', '--omit=optional', '--no-audit', '--no-fund'], {cwd: project, timeout: 240_000});

  const bin = path.join(project, 'node_modules', '.bin', 'rbee');
  const env = {RBEE_HOME: path.join(work, 'home')};
  const version = await execa(bin, ['--version'], {cwd: work, env, timeout: 30_000});
  t.is(version.stdout.trim(), manifest.version);
  const help = await execa(bin, ['--help'], {cwd: work, env, timeout: 30_000});
  t.regex(help.stdout, /hive\b.*daemon/);
  t.regex(help.stdout, /RBEE_HOME/);

  // What a client program and a plugin's tests import from the installed package.
  const imports = await execa(
    process.execPath,
    [
      '--input-type=module',
      '-e',
      `
    const protocol = await import('rbee/protocol');
    const testing = await import('rbee/testing');
    const rbee = await import('rbee');
    let candle;
    try { await rbee.loadNativeBinding(); candle = 'loaded'; } catch (error) { candle = error.message; }
    const client = new protocol.HiveClient({url: 'http://127.0.0.1:1'});
    console.log(JSON.stringify({schema: typeof protocol.HeartbeatSchema.safeParse, client: typeof client.status, reader: typeof protocol.readSse, harness: typeof testing.createAdapterHarness, candle}));
  `,
    ],
    {cwd: project, timeout: 30_000},
  );
  const result = JSON.parse(imports.stdout) as {schema: string; client: string; reader: string; harness: string; candle: string};
  t.is(result.schema, 'function');
  t.is(result.client, 'function', 'the typed hive client is part of rbee/protocol');
  t.is(result.reader, 'function');
  t.is(result.harness, 'function');
  if (nativeBuilt) {
    t.is(result.candle, 'loaded');
  } else {
    t.regex(result.candle, /packed without it for \w+-\w+.*another --type/);
  }
});
