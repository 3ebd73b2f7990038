/**
 * The typed face of rbee's candle engine (native/: Rust, Candle, napi-rs). This module is the
 * only importer of the generated loader (native/index.js); it imports it lazily, so importing
 * `rbee` never fails on a machine where the .node has not been built (`npm run build:native`).
 *
 * The binding returns expected failures as values (`{code, message}`); here they become
 * `NativeEngineError`s: an RbeeError whose `code` is rbee's stable error code (and HTTP status)
 * and whose `nativeCode` says exactly what happened (invalid_gguf, prompt_too_long, ...).
 */
import fs from 'node:fs';
import {fileURLToPath} from 'node:url';
import {RbeeError, type ErrorCode} from '../errors.js';
import type * as Binding from '../../native/index.js';

export type NativeErrorCode =
  | 'invalid_gguf'
  | 'unsupported_architecture'
  | 'unsupported_tokenizer'
  | 'device_unknown'
  | 'device_unavailable'
  | 'file_not_found'
  | 'prompt_too_long'
  | 'invalid_request'
  | 'template_error'
  | 'model_closed'
  | 'unsupported_quantization'
  | 'insufficient_vram'
  | 'binding_missing'
  | 'internal';

/** How each native failure maps onto rbee's stable codes (and so its HTTP status). */
const rbeeCodeOf: Record<NativeErrorCode, ErrorCode> = {
  invalid_gguf: 'engine_error',
  unsupported_architecture: 'engine_error',
  unsupported_tokenizer: 'engine_error',
  device_unknown: 'device_unknown',
  device_unavailable: 'device_unknown',
  file_not_found: 'model_not_found',
  prompt_too_long: 'invalid_request',
  invalid_request: 'invalid_request',
  template_error: 'invalid_request',
  model_closed: 'worker_not_ready',
  unsupported_quantization: 'engine_error',
  insufficient_vram: 'insufficient_memory',
  binding_missing: 'engine_error',
  internal: 'internal',
};

function isNativeErrorCode(code: string): code is NativeErrorCode {
  return Object.hasOwn(rbeeCodeOf, code);
}

export class NativeEngineError extends RbeeError {
  /** The engine's own code: invalid_gguf, unsupported_architecture, device_unavailable, prompt_too_long, ... */
  readonly nativeCode: NativeErrorCode;

  constructor(nativeCode: NativeErrorCode, message: string, options: {cause?: unknown} = {}) {
    super(rbeeCodeOf[nativeCode], message, options);
    this.nativeCode = nativeCode;
  }

  override toJSON(): {error: {code: ErrorCode; message: string}} {
    return {error: {code: this.code, message: `${this.nativeCode}: ${this.message}`}};
  }
}

export function fromNative(error: Binding.NativeError): NativeEngineError {
  return new NativeEngineError(isNativeErrorCode(error.code) ? error.code : 'internal', error.message);
}

export function isNativeError(value: unknown): value is Binding.NativeError {
  return typeof value === 'object' && value !== null && !(value instanceof Error)
    && typeof (value as {code?: unknown}).code === 'string' && typeof (value as {message?: unknown}).message === 'string';
}

let bindingPromise: Promise<typeof Binding> | undefined;

/**
 * Says how to get the engine where rbee runs: a source checkout builds it; an installed package
 * carries it only if it was packed after a build (see native/README.md, "Packaging").
 */
export function nativeMissingMessage(reason?: string): string {
  const platform = `${process.platform}-${process.arch}`;
  const checkout = fs.existsSync(fileURLToPath(new URL('../../native/Cargo.toml', import.meta.url)));
  const how = checkout
    ? 'run `npm run build:native` in the rbee checkout (needs Rust and cargo)'
    : `this rbee package was packed without it for ${platform}: install one packed after \`npm run build:native\`, or pick another --type (llamacpp runs the same GGUF models)`;
  return `rbee's candle engine is not built for this machine${reason === undefined ? '' : ` (${reason})`}: ${how}`;
}

/** The generated loader, imported once; a clear error when the .node was never built. */
export async function loadNativeBinding(): Promise<typeof Binding> {
  bindingPromise ??= import('../../native/index.js').catch((error: unknown) => {
    bindingPromise = undefined;
    const reason = error instanceof Error ? error.message.split('\n')[0] : String(error);
    throw new NativeEngineError('binding_missing', nativeMissingMessage(reason), {cause: error});
  });
  return bindingPromise;
}

/** Whether the native binding loads here (it is built and matches this platform). */
export async function nativeBindingAvailable(): Promise<boolean> {
  try {
    await loadNativeBinding();
    return true;
  } catch {
    return false;
  }
}

let backendsPromise: Promise<readonly string[]> | undefined;

/**
 * The devices this build of the engine can run on ("cpu", and "cuda" or "metal" when built with
 * that feature); none when it is not built. Asked once: the answer cannot change while running.
 */
export async function nativeBackends(): Promise<readonly string[]> {
  backendsPromise ??= loadNativeBinding().then(
    // A .node built before backends() existed is a CPU build.
    binding => (typeof binding.backends === 'function' ? binding.backends() : ['cpu']),
    () => [],
  );
  return backendsPromise;
}

/**
 * Which of llama.cpp's CPU builds the engine's exact CPU path follows in this process: "avx512"
 * or "avx2", the one llama.cpp loads on this CPU unless RBEE_CANDLE_GGML_SIMD overrides it.
 */
export async function nativeGgmlSimdLevel(): Promise<'avx512' | 'avx2'> {
  const binding = await loadNativeBinding();
  const level = binding.ggmlSimdLevel();
  if (level !== 'avx512' && level !== 'avx2') {
    throw new Error(`the native engine reported an unknown SIMD level "${level}"`);
  }
  return level;
}

/**
 * The engine's forward passes: ggml (llama.cpp's CPU kernels replicated, CPU only), tensor
 * (Candle tensor ops, any device), graph (rbee's CUDA kernels, one CUDA graph per decode step;
 * CUDA builds only).
 */
export const nativeForwardPaths = ['ggml', 'tensor', 'graph'] as const;
export type NativeForwardPath = typeof nativeForwardPaths[number];

function isForwardPath(value: unknown): value is NativeForwardPath {
  return typeof value === 'string' && (nativeForwardPaths as readonly string[]).includes(value);
}

export type NativeLoadOptions = {
  /** A GGUF file. */
  path: string;
  /** cpu (the default), cuda:N or metal. */
  device?: string;
  /** KV cache positions; default min(the model's training context, 4096). */
  contextSize?: number;
  /** CPU threads (the first model loaded in a process sets them). */
  threads?: number;
  /** The forward pass; default RBEE_CANDLE_FORWARD, else ggml on the CPU, graph on CUDA (tensor where it has no kernels for the model), tensor on Metal. */
  forward?: NativeForwardPath;
  /**
   * Streams served at once, batched step by step (each with a KV cache of `contextSize`);
   * default 1. A tensor-parallel rank serves one: `info.parallel` says what the model got.
   */
  parallel?: number;
  /** Load progress, 0..1. */
  onProgress?: (fraction: number) => void;
  /**
   * Rank 0 of a tensor-parallel group on the CPU (`shards`: their endpoints, shard 1 first, and the
   * group's `secret`), or the single-process reference of a group of `blocks` ranks.
   */
  tensorParallel?: NativeTensorParallel;
};

export type NativeTensorParallel = {shards?: string[]; secret?: string; timeoutMs?: number; waitMs?: number; blocks?: number};

export type NativeModelInfo = Binding.ModelInfo;
export type NativeBatchInfo = Binding.BatchInfo;
export type NativeMemoryInfo = Binding.MemoryInfo;
export type NativeChatMessage = {role: string; content: string};

export type NativeGenerateRequest = {
  /** Raw text to continue (BOS added as the model asks; special-token text is not parsed). */
  prompt?: string;
  /** Chat messages, through the GGUF's chat template. */
  messages?: NativeChatMessage[];
  /** Token ids, evaluated as given. */
  tokens?: number[];
  maxTokens: number;
  /** 0 (the default) is greedy. */
  temperature?: number;
  topK?: number;
  topP?: number;
  seed?: number;
  stop?: string[];
  /** Aborting stops the generation before its next token; it then resolves with finishReason 'cancelled'. */
  signal?: AbortSignal;
  /** Each piece of text as soon as it is final (never text a stop string later removes). */
  onText?: (text: string) => void;
};

export type NativeGenerateResult = {
  text: string;
  /** Generated token ids (the end-of-generation token excluded). */
  tokens: number[];
  tokensGenerated: number;
  promptTokens: number;
  finishReason: 'stop' | 'length' | 'cancelled';
  promptMs: number;
  totalMs: number;
};

export type NativeTokenProbability = {token: number; probability: number};

export type NativeModel = {
  readonly info: NativeModelInfo;
  /**
   * Up to `info.parallel` generations run at once, batched (each gets the tokens it would get
   * alone); more wait for a slot, in call order.
   */
  generate(request: NativeGenerateRequest): Promise<NativeGenerateResult>;
  tokenize(text: string, options?: {addSpecial?: boolean; parseSpecial?: boolean}): number[];
  detokenize(tokens: number[], options?: {special?: boolean}): string;
  applyChatTemplate(messages: NativeChatMessage[]): string;
  /**
   * Teacher forcing: the `top` most probable next tokens before each of `forced`, after `prompt`
   * (token ids). For comparisons with other engines; it takes a slot like a generation.
   */
  nextTokenProbabilities(prompt: number[], forced: number[], top: number): Promise<NativeTokenProbability[][]>;
  memory(): NativeMemoryInfo;
  /** Slots, slots in use and requests waiting for one, now. */
  batch(): NativeBatchInfo;
  close(): void;
};

function finishReasonOf(value: string): NativeGenerateResult['finishReason'] {
  return value === 'length' || value === 'cancelled' ? value : 'stop';
}

class LoadedModel implements NativeModel {
  readonly #binding: typeof Binding;
  readonly #model: Binding.Model;

  constructor(binding: typeof Binding, model: Binding.Model) {
    this.#binding = binding;
    this.#model = model;
  }

  get info(): NativeModelInfo {
    return this.#model.info;
  }

  // The engine's scheduler admits and orders generations: nothing is serialized here.
  generate(request: NativeGenerateRequest): Promise<NativeGenerateResult> {
    const {signal, onText} = request;
    if (signal?.aborted) {
      return Promise.resolve({text: '', tokens: [], tokensGenerated: 0, promptTokens: 0, finishReason: 'cancelled', promptMs: 0, totalMs: 0});
    }
    return new Promise((resolve, reject) => {
      let cancel: (() => void) | undefined;
      const settle = () => {
        if (cancel !== undefined) {
          signal?.removeEventListener('abort', cancel);
        }
      };
      const started = this.#model.generate({
        ...(request.prompt === undefined ? {} : {prompt: request.prompt}),
        ...(request.messages === undefined ? {} : {messages: request.messages}),
        ...(request.tokens === undefined ? {} : {tokens: request.tokens}),
        maxTokens: request.maxTokens,
        ...(request.temperature === undefined ? {} : {temperature: request.temperature}),
        ...(request.topK === undefined ? {} : {topK: request.topK}),
        ...(request.topP === undefined ? {} : {topP: request.topP}),
        ...(request.seed === undefined ? {} : {seed: request.seed}),
        ...(request.stop === undefined ? {} : {stop: request.stop}),
      }, event => {
        if (event.kind === 'text') {
          try {
            onText?.(event.text ?? '');
          } catch {
            // A failing listener must not take the generation down with it.
          }
        } else if (event.kind === 'done' && event.result !== undefined) {
          settle();
          const result = event.result;
          resolve({...result, finishReason: finishReasonOf(result.finishReason)});
        } else {
          settle();
          reject(event.error === undefined ? new NativeEngineError('internal', `unexpected generation event ${event.kind}`) : fromNative(event.error));
        }
      });
      if (!(started instanceof this.#binding.Generation)) {
        reject(isNativeError(started) ? fromNative(started) : new NativeEngineError('internal', 'the generation did not start'));
        return;
      }
      cancel = () => started.cancel();
      signal?.addEventListener('abort', cancel, {once: true});
    });
  }

  tokenize(text: string, options: {addSpecial?: boolean; parseSpecial?: boolean} = {}): number[] {
    const result = this.#model.tokenize(text, options.addSpecial ?? true, options.parseSpecial ?? false);
    if (isNativeError(result)) {
      throw fromNative(result);
    }
    return Array.from(result);
  }

  detokenize(tokens: number[], options: {special?: boolean} = {}): string {
    const result = this.#model.detokenize(tokens, options.special ?? false);
    if (isNativeError(result)) {
      throw fromNative(result);
    }
    return result;
  }

  applyChatTemplate(messages: NativeChatMessage[]): string {
    const result = this.#model.applyChatTemplate(messages);
    if (isNativeError(result)) {
      throw fromNative(result);
    }
    return result;
  }

  async nextTokenProbabilities(prompt: number[], forced: number[], top: number): Promise<NativeTokenProbability[][]> {
    const result = await this.#model.nextTokenProbabilities(prompt, forced, top);
    if (isNativeError(result)) {
      throw fromNative(result);
    }
    return result;
  }

  memory(): NativeMemoryInfo {
    return this.#model.memory();
  }

  batch(): NativeBatchInfo {
    return this.#model.batch();
  }

  close(): void {
    this.#model.close();
  }
}

/**
 * Loads a GGUF with the candle engine, off the JS thread. Throws a NativeEngineError: its
 * `nativeCode` is binding_missing, file_not_found, invalid_gguf, unsupported_architecture,
 * unsupported_tokenizer, device_unknown, device_unavailable, template_error, invalid_request,
 * or on the graph path unsupported_quantization (a weight type without a kernel, named) or
 * insufficient_vram (checked before anything is allocated).
 */
export async function loadNativeModel(options: NativeLoadOptions): Promise<NativeModel> {
  // Checked here as well as in the engine, so a caller's typo fails before the binding loads
  // (plain check, no zod: this module travels alone to GPU machines, see scripts/device-bundle.sh).
  if (options.forward !== undefined && !isForwardPath(options.forward)) {
    throw new NativeEngineError('invalid_request', `forward: expected one of ${nativeForwardPaths.join(', ')}, got ${JSON.stringify(options.forward)}`);
  }
  const binding = await loadNativeBinding();
  const loaded = await binding.Model.load({
    path: options.path,
    ...(options.device === undefined ? {} : {device: options.device}),
    ...(options.contextSize === undefined ? {} : {contextSize: options.contextSize}),
    ...(options.threads === undefined ? {} : {threads: options.threads}),
    ...(options.forward === undefined ? {} : {forward: options.forward}),
    ...(options.tensorParallel === undefined ? {} : {tensorParallel: options.tensorParallel}),
    ...(options.parallel === undefined ? {} : {parallel: options.parallel}),
  }, options.onProgress);
  if (!(loaded instanceof binding.Model)) {
    throw isNativeError(loaded) ? fromNative(loaded) : new NativeEngineError('internal', 'the model load returned nothing usable');
  }
  return new LoadedModel(binding, loaded);
}
