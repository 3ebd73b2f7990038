/**
 * rbee's candle engine as a benchmark side, driven through the typed wrapper (src/native) exactly
 * as a worker drives it: load the GGUF on the device, then greedy generations of given token ids.
 * The times are the engine's own (Rust `Instant`s around the prompt and the first token), so no
 * JavaScript event-loop hop is counted against it.
 */
import fs from 'node:fs';
import path from 'node:path';
import {loadNativeBinding, loadNativeModel, type NativeForwardPath, type NativeModel} from '../../src/native/index.js';
import {repoRoot} from './hive-process.js';
import {benchPromptTokens} from './bench-prompt.js';
import {ownCpuSeconds} from './proc-cpu.js';
import {speedFromInstants, type SpeedEngine, type SpeedMeasurement} from './speed-engine.js';

export type CandleSide = SpeedEngine & {
  readonly model: NativeModel;
  /** The prompt's token ids (BOS first), built with this model's tokenizer: the peers evaluate the same ids. */
  readonly prompt: number[];
  /** The token ids of the last generation, to check that the peers generated the same ones. */
  readonly lastTokens: number[];
};

/** Which .node the loader took: NAPI_RS_NATIVE_LIBRARY_PATH's, or the one beside native/index.js. */
function bindingFile(): {path: string; bytes: number; modified: string} | null {
  const override = process.env.NAPI_RS_NATIVE_LIBRARY_PATH;
  const candidates =
    override !== undefined && override !== ''
      ? [path.resolve(override)]
      : (() => {
          try {
            const folder = path.join(repoRoot, 'native');
            return fs
              .readdirSync(folder)
              .filter(name => /^rbee-native\..+\.node$/.test(name))
              .map(name => path.join(folder, name));
          } catch {
            return [];
          }
        })();
  for (const file of candidates) {
    try {
      const stats = fs.statSync(file);
      return {path: file, bytes: stats.size, modified: stats.mtime.toISOString()};
    } catch {
      // try the next one
    }
  }
  return null;
}

export async function startCandleSide(options: {
  modelPath: string;
  device: string;
  /** null: the engine's default for the device (or RBEE_CANDLE_FORWARD). */
  forward?: NativeForwardPath | null;
  threads: number;
  contextSize: number;
  promptTokens: number;
  decodeTokens: number;
}): Promise<CandleSide> {
  const binding = await loadNativeBinding();
  const model = await loadNativeModel({
    path: options.modelPath,
    device: options.device,
    threads: options.threads,
    contextSize: options.contextSize,
    ...(options.forward ? {forward: options.forward} : {}),
  });
  const {info} = model;
  let prompt: number[];
  try {
    prompt = benchPromptTokens(model, options.promptTokens);
  } catch (error) {
    model.close();
    throw error;
  }
  let lastTokens: number[] = [];
  const side: CandleSide = {
    name: 'candle',
    model,
    prompt,
    get lastTokens() {
      return lastTokens;
    },
    description: {
      engine: 'rbee candle engine (native/, through src/native loadNativeModel)',
      binding_target: binding.__napiBindingTarget,
      binding_file: bindingFile(),
      device: info.device,
      forward: info.forward,
      architecture: info.architecture,
      threads: options.threads,
      context_size: info.contextSize,
      layers: info.layers,
      embedding_size: info.embeddingSize,
      vocab_size: info.vocabSize,
      weight_bytes: info.weightBytes,
      kv_cache_bytes: info.kvCacheBytes,
      sampling: 'greedy (temperature 0); stops at an end-of-generation token (the API has no "ignore EOS")',
      timing: "the engine's own: promptMs = start → first generated token, decode = totalMs − promptMs",
    },
    async measure(): Promise<SpeedMeasurement> {
      const cpuBefore = ownCpuSeconds();
      const began = performance.now();
      const result = await model.generate({tokens: prompt, maxTokens: options.decodeTokens, temperature: 0});
      const wallSeconds = (performance.now() - began) / 1000;
      lastTokens = result.tokens;
      return speedFromInstants({
        promptTokens: result.promptTokens,
        generated: result.tokensGenerated,
        promptMs: result.promptMs,
        decodeMs: result.totalMs - result.promptMs,
        finish: result.finishReason,
        processCores: wallSeconds > 0 ? (ownCpuSeconds() - cpuBefore) / wallSeconds : null,
      });
    },
    async close() {
      model.close();
    },
  };
  return side;
}
