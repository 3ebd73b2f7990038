/** What the numbers were measured on: they mean little without it. */
import {execFileSync} from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import {repoRoot} from './hive-process.js';

export type MachineInfo = {
  cpu_model: string;
  cores: number;
  available_parallelism: number;
  memory_gib: number;
  platform: string;
  kernel: string;
  arch: string;
  hostname: string;
  node: string;
  node_llama_cpp: string;
  rbee: string;
  git_commit: string | null;
  gpu: 'none (CPU only)';
};

export type ModelInfo = {name: string; path: string; file: string; size_bytes: number; size_mib: number};

function packageVersion(file: string): string {
  try {
    return (JSON.parse(fs.readFileSync(file, 'utf8')) as {version?: string}).version ?? 'unknown';
  } catch {
    return 'unknown';
  }
}

function gitCommit(): string | null {
  try {
    return (
      execFileSync('git', ['rev-parse', 'HEAD'], {cwd: repoRoot, stdio: ['ignore', 'pipe', 'ignore'], timeout: 5_000})
        .toString()
        .trim() || null
    );
  } catch {
    return null; // no commit yet, or no git
  }
}

export function machineInfo(): MachineInfo {
  const cpus = os.cpus();
  return {
    cpu_model: cpus[0]?.model.trim() ?? 'unknown',
    cores: cpus.length,
    available_parallelism: os.availableParallelism(),
    memory_gib: Math.round((os.totalmem() / 1024 ** 3) * 10) / 10,
    platform: os.platform(),
    kernel: os.release(),
    arch: os.arch(),
    hostname: os.hostname(),
    node: process.version,
    node_llama_cpp: packageVersion(path.join(repoRoot, 'node_modules', 'node-llama-cpp', 'package.json')),
    rbee: packageVersion(path.join(repoRoot, 'package.json')),
    git_commit: gitCommit(),
    gpu: 'none (CPU only)',
  };
}

export function modelInfo(name: string, file: string): ModelInfo {
  const size = fs.statSync(file).size;
  return {name, path: file, file: path.basename(file), size_bytes: size, size_mib: Math.round((size / 1024 ** 2) * 10) / 10};
}

/** A name safe in a file name: lower case, `a-z0-9-` only, at most 40 characters. */
export function fileSlug(text: string): string {
  return text
    .toLowerCase()
    .replace(/[^a-z0-9-]+/g, '-')
    .replace(/^-+|-+$/g, '')
    .slice(0, 40);
}

/** The host part of a results file name: the short host name, or `cpu<cores>` when the host has no usable name. */
export function hostSlug(info: MachineInfo): string {
  const host = fileSlug(info.hostname.split('.')[0] ?? '');
  return host.length >= 2 && host !== 'localhost' ? host : `cpu${info.cores}`;
}

/** The results file's machine part: `cpu-<host name>`, or `cpu-cpu<cores>` when the host has no usable name. */
export function machineSlug(info: MachineInfo): string {
  return `cpu-${hostSlug(info)}`;
}

/** yyyy-mm-dd in local time: the date part of a results file name. */
export function localDate(date: Date): string {
  const pad = (value: number) => String(value).padStart(2, '0');
  return `${date.getFullYear()}-${pad(date.getMonth() + 1)}-${pad(date.getDate())}`;
}
