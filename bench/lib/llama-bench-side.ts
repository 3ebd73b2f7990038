/**
 * The peer that needs nothing but a binary: llama.cpp's own llama-bench, one process per sample,
 * `-p <prompt> -n <decode> -t <threads> -r 1 -o json` (and `-ngl 99` on a GPU, `-ngl 0` on the
 * CPU). Its pp test evaluates the prompt as one batch and its tg test decodes token by token;
 * avg_ts of each is the sample. It warms up each test itself before timing it.
 *
 * It differs from the in-process sides in two ways the tables note: its prompt is random tokens
 * rather than ours (the speed does not depend on which), and its tg test decodes from an empty
 * cache rather than after the prompt (the attention over 128 more cached positions is a small
 * share of a step for the models this runs).
 */
import {spawn} from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import {onCleanup} from './cleanup.js';
import {tokensPerSecond, type SpeedEngine, type SpeedMeasurement} from './speed-engine.js';

/** One entry of llama-bench's `-o json` array: the fields read here. */
type LlamaBenchTest = {
  build_commit?: string;
  build_number?: number;
  cpu_info?: string;
  gpu_info?: string;
  backends?: string;
  model_type?: string;
  model_size?: number;
  model_n_params?: number;
  n_threads?: number;
  n_gpu_layers?: number;
  n_batch?: number;
  n_ubatch?: number;
  flash_attn?: number | boolean;
  type_k?: string;
  type_v?: string;
  n_prompt: number;
  n_gen: number;
  n_depth?: number;
  avg_ns: number;
  avg_ts: number;
};

/** The llama-bench rbee installs (`rbee engines install llama.cpp`): ~/.cache/rbee/llama.cpp/<version>/bin/llama-bench, newest first. */
export function findInstalledLlamaBench(): string | null {
  const root = path.join(os.homedir(), '.cache', 'rbee', 'llama.cpp');
  let versions: string[];
  try {
    versions = fs.readdirSync(root);
  } catch {
    return null;
  }
  const found = versions
    .map(version => path.join(root, version, 'bin', 'llama-bench'))
    .filter(file => fs.existsSync(file))
    .sort((a, b) => fs.statSync(b).mtimeMs - fs.statSync(a).mtimeMs);
  return found[0] ?? null;
}

/** Runs a binary to completion in its own process group; SIGKILLs the group on a timeout or when the benchmark is cleaned up. */
function runToCompletion(binary: string, args: string[], timeoutMs: number): Promise<{stdout: string; stderr: string}> {
  return new Promise((resolve, reject) => {
    const child = spawn(binary, args, {stdio: ['ignore', 'pipe', 'pipe'], detached: true});
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (chunk: string) => {
      stdout += chunk;
    });
    child.stderr.setEncoding('utf8').on('data', (chunk: string) => {
      stderr = `${stderr}${chunk}`.slice(-8_000);
    });
    const kill = () => {
      if (child.pid !== undefined && child.exitCode === null && child.signalCode === null) {
        try {
          process.kill(-child.pid, 'SIGKILL');
        } catch {
          // already gone
        }
      }
    };
    const unregister = onCleanup(`llama-bench ${child.pid ?? ''}`, async () => kill());
    const timer = setTimeout(kill, timeoutMs);
    child.on('error', error => {
      clearTimeout(timer);
      unregister();
      reject(new Error(`cannot run ${binary}: ${error.message}`));
    });
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      unregister();
      if (code === 0) {
        resolve({stdout, stderr});
      } else {
        reject(
          new Error(
            `${path.basename(binary)} ${args.join(' ')} ended with ${signal ?? `exit code ${code}`}:\n${stderr.trim().split('\n').slice(-15).join('\n')}`,
          ),
        );
      }
    });
  });
}

function parseTests(stdout: string): LlamaBenchTest[] {
  // The JSON array is all that -o json prints to stdout; anything before '[' would be a stray log line.
  const start = stdout.indexOf('[');
  const parsed: unknown = JSON.parse(stdout.slice(start === -1 ? 0 : start));
  if (!Array.isArray(parsed)) {
    throw new Error('llama-bench -o json printed no array');
  }
  return parsed as LlamaBenchTest[];
}

/** What llama-bench says about itself and the settings it ran with (its JSON repeats them in every test). */
const buildFields = [
  'build_commit',
  'build_number',
  'backends',
  'cpu_info',
  'gpu_info',
  'model_type',
  'model_size',
  'model_n_params',
  'n_threads',
  'n_gpu_layers',
  'n_batch',
  'n_ubatch',
  'flash_attn',
  'type_k',
  'type_v',
] as const;

function describeBuild(test: LlamaBenchTest): Record<string, unknown> {
  return Object.fromEntries(buildFields.map(field => [field, test[field]]));
}

export function startLlamaBenchSide(options: {
  binary: string;
  modelPath: string;
  threads: number;
  gpu: boolean;
  promptTokens: number;
  decodeTokens: number;
  timeoutMs?: number;
}): SpeedEngine {
  if (!fs.existsSync(options.binary)) {
    throw new Error(`llama-bench not found: ${options.binary}`);
  }
  const args = [
    '-m',
    options.modelPath,
    '-p',
    String(options.promptTokens),
    '-n',
    String(options.decodeTokens),
    '-t',
    String(options.threads),
    '-ngl',
    options.gpu ? '99' : '0',
    '-r',
    '1',
    '-o',
    'json',
  ];
  // Filled from the first run's JSON: llama-bench has no --version, its output says what it is.
  const description: Record<string, unknown> = {engine: 'llama.cpp llama-bench, one process per sample', binary: path.resolve(options.binary), args};
  return {
    name: 'llama-bench',
    description,
    async measure(): Promise<SpeedMeasurement> {
      const {stdout} = await runToCompletion(options.binary, args, options.timeoutMs ?? 600_000);
      const tests = parseTests(stdout);
      const prompt = tests.find(test => test.n_prompt > 0 && test.n_gen === 0);
      const decode = tests.find(test => test.n_gen > 0 && test.n_prompt === 0);
      if (prompt === undefined || decode === undefined) {
        throw new Error(`llama-bench printed no pp and tg tests: ${stdout.slice(0, 500)}`);
      }
      Object.assign(description, {build: describeBuild(decode)});
      const promptMs = prompt.avg_ns / 1e6;
      const decodeMs = decode.avg_ns / 1e6;
      return {
        prompt_tokens: prompt.n_prompt,
        prompt_ms: promptMs,
        // avg_ts is llama-bench's own n / time; the same as tokensPerSecond here with one repetition.
        prompt_tps: Number.isFinite(prompt.avg_ts) ? prompt.avg_ts : tokensPerSecond(prompt.n_prompt, promptMs),
        generated_tokens: decode.n_gen,
        // Each of tg's n_gen steps is one single-token forward pass, as each decode step of the other sides is.
        decode_steps: decode.n_gen,
        decode_ms: decodeMs,
        decode_tps: Number.isFinite(decode.avg_ts) ? decode.avg_ts : tokensPerSecond(decode.n_gen, decodeMs),
        finish: 'length',
        process_cores: null,
      };
    },
    async close() {
      // nothing stays running between samples
    },
  };
}
