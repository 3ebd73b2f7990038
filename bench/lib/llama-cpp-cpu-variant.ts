/**
 * Which of llama.cpp's CPU builds a reference comes from. node-llama-cpp ships one ggml CPU
 * library per instruction-set level (libggml-cpu-haswell.so, -zen4.so, ...) and loads the best
 * one this CPU runs, and their float arithmetic differs (8- or 16-lane sums, two `ggml_v_expf`s).
 * To hold the candle engine to another level's arithmetic on the same machine (the AVX2 build on a
 * CPU with AVX-512), a copy of node-llama-cpp is staged whose binary folder holds that one CPU
 * library, and imported instead of the installed one. The copy lives in node_modules/.cache, so
 * its own dependencies resolve from the project's node_modules; it is made once per version.
 * One process must load only one node-llama-cpp: the installed one or one staged copy.
 */
import fs from 'node:fs';
import path from 'node:path';
import {createRequire} from 'node:module';
import {pathToFileURL} from 'node:url';

type NodeLlamaCpp = typeof import('node-llama-cpp');

const require = createRequire(import.meta.url);

function packageDir(name: string): string {
  // Resolved from node-llama-cpp's own folder, as its binary package is.
  const from = name === 'node-llama-cpp' ? import.meta.url : require.resolve('node-llama-cpp');
  const localRequire = createRequire(from);
  let dir = path.dirname(localRequire.resolve(name));
  while (!fs.existsSync(path.join(dir, 'package.json')) || JSON.parse(fs.readFileSync(path.join(dir, 'package.json'), 'utf8')).name !== name) {
    const parent = path.dirname(dir);
    if (parent === dir) {
      throw new Error(`cannot find the folder of ${name}`);
    }
    dir = parent;
  }
  return dir;
}

/** The CPU builds node-llama-cpp ships for this platform (haswell, zen4, ...). */
export function llamaCppCpuVariants(): string[] {
  const bins = path.join(packageDir('@node-llama-cpp/linux-x64'), 'bins', 'linux-x64');
  return fs
    .readdirSync(bins)
    .flatMap(file => /^libggml-cpu-(.+)\.so$/.exec(file)?.[1] ?? [])
    .sort();
}

function copyTree(from: string, to: string, skip: (relative: string) => boolean, relative = ''): void {
  fs.mkdirSync(path.join(to, relative), {recursive: true});
  for (const entry of fs.readdirSync(path.join(from, relative), {withFileTypes: true})) {
    const child = path.join(relative, entry.name);
    if (skip(child)) {
      continue;
    }
    if (entry.isDirectory()) {
      copyTree(from, to, skip, child);
    } else {
      fs.copyFileSync(path.join(from, child), path.join(to, child));
    }
  }
}

/** Stages (once) a node-llama-cpp whose only CPU build is `variant`; returns its folder. */
export function stageLlamaCppCpuVariant(variant: string): string {
  if (!llamaCppCpuVariants().includes(variant)) {
    throw new Error(`node-llama-cpp ships no CPU build "${variant}" (it has: ${llamaCppCpuVariants().join(', ')})`);
  }
  const nodeLlamaCpp = packageDir('node-llama-cpp');
  const binaries = packageDir('@node-llama-cpp/linux-x64');
  const version = JSON.parse(fs.readFileSync(path.join(nodeLlamaCpp, 'package.json'), 'utf8')).version as string;
  const project = path.resolve(nodeLlamaCpp, '..');
  const stage = path.join(project, '.cache', 'rbee-llama-cpu-variants', `${version}-${variant}`);
  const done = path.join(stage, '.complete');
  if (!fs.existsSync(done)) {
    fs.rmSync(stage, {recursive: true, force: true});
    const modules = path.join(stage, 'node_modules');
    // llama/ holds the source bundle and build tooling, not needed to load prebuilt binaries.
    copyTree(
      nodeLlamaCpp,
      path.join(modules, 'node-llama-cpp'),
      relative => relative === path.join('llama', 'gitRelease.bundle') || relative === path.join('llama', 'xpack'),
    );
    copyTree(binaries, path.join(modules, '@node-llama-cpp', 'linux-x64'), relative => {
      const cpu = /libggml-cpu-(.+)\.so$/.exec(relative);
      return cpu !== null && cpu[1] !== variant;
    });
    fs.writeFileSync(done, `${variant}\n`);
  }
  return path.join(stage, 'node_modules', 'node-llama-cpp');
}

/** node-llama-cpp as installed, or a staged copy limited to one CPU build. */
export async function importNodeLlamaCpp(cpuVariant?: string): Promise<NodeLlamaCpp> {
  if (cpuVariant === undefined) {
    return import('node-llama-cpp');
  }
  const dir = stageLlamaCppCpuVariant(cpuVariant);
  const main = JSON.parse(fs.readFileSync(path.join(dir, 'package.json'), 'utf8')).exports['.'].import as string;
  return (await import(pathToFileURL(path.join(dir, main)).href)) as NodeLlamaCpp;
}

/** The CPU build a loaded llama.cpp reported (from its `load_backend` log line), if it said. */
export function loadedCpuVariant(logLines: readonly string[]): string | undefined {
  for (const line of logLines) {
    const match = /libggml-cpu-([\w.]+)\.so/.exec(line);
    if (match !== null) {
      return match[1];
    }
  }
  return undefined;
}
