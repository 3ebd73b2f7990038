/**
 * Tiny random-weight GGUFs written from scratch (Q8_0 matrices, f32 norms), so the llama, qwen2
 * and qwen3 code paths can be checked against llama.cpp without downloading a model: both
 * engines load the same file, and greedy decoding must give the same tokens.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

type Value = {type: 'u32'; value: number} | {type: 'f32'; value: number} | {type: 'bool'; value: boolean} | {type: 'str'; value: string}
  | {type: 'strs'; value: string[]} | {type: 'f32s'; value: number[]} | {type: 'i32s'; value: number[]};
type Tensor = {name: string; dims: number[]; data: Float32Array; quantize: boolean};

const GGUF_U32 = 4;
const GGUF_I32 = 5;
const GGUF_F32 = 6;
const GGUF_BOOL = 7;
const GGUF_STRING = 8;
const GGUF_ARRAY = 9;
const GGML_F32 = 0;
const GGML_Q8_0 = 8;

class Writer {
  readonly chunks: Buffer[] = [];
  size = 0;
  push(buffer: Buffer) {
    this.chunks.push(buffer);
    this.size += buffer.length;
  }
  u32(v: number) {
    const b = Buffer.alloc(4);
    b.writeUInt32LE(v);
    this.push(b);
  }
  i32(v: number) {
    const b = Buffer.alloc(4);
    b.writeInt32LE(v);
    this.push(b);
  }
  u64(v: number) {
    const b = Buffer.alloc(8);
    b.writeBigUInt64LE(BigInt(v));
    this.push(b);
  }
  f32(v: number) {
    const b = Buffer.alloc(4);
    b.writeFloatLE(v);
    this.push(b);
  }
  str(s: string) {
    const bytes = Buffer.from(s, 'utf8');
    this.u64(bytes.length);
    this.push(bytes);
  }
}

function f16Bits(value: number): number {
  const f = new Float32Array([value]);
  const x = new Uint32Array(f.buffer)[0]!;
  const sign = (x >>> 16) & 0x8000;
  let exponent = ((x >>> 23) & 0xff) - 127 + 15;
  let mantissa = x & 0x7fffff;
  if (exponent <= 0) {
    return sign; // tiny scales never happen here
  }
  // round to nearest even
  const round = mantissa & 0x1fff;
  mantissa >>>= 13;
  if (round > 0x1000 || (round === 0x1000 && (mantissa & 1) === 1)) {
    mantissa++;
    if (mantissa === 0x400) {
      mantissa = 0;
      exponent++;
    }
  }
  return sign | (exponent << 10) | mantissa;
}

function quantizeQ8_0(data: Float32Array): Buffer {
  const blocks = data.length / 32;
  const out = Buffer.alloc(blocks * 34);
  for (let b = 0; b < blocks; b++) {
    let max = 0;
    for (let i = 0; i < 32; i++) {
      max = Math.max(max, Math.abs(data[b * 32 + i]!));
    }
    const d = max / 127;
    out.writeUInt16LE(f16Bits(d), b * 34);
    const id = d === 0 ? 0 : 1 / d;
    for (let i = 0; i < 32; i++) {
      out.writeInt8(Math.max(-127, Math.min(127, Math.round(data[b * 32 + i]! * id))), b * 34 + 2 + i);
    }
  }
  return out;
}

function random(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (Math.imul(state, 1_664_525) + 1_013_904_223) >>> 0;
    return state / 2 ** 32 - 0.5;
  };
}

export type TinyArch = 'llama' | 'qwen2' | 'qwen3';

/** The byte-level vocabulary (GPT-2's 256 printable characters) plus a few merges. */
function bpeVocab(): {tokens: string[]; merges: string[]; types: number[]} {
  const chars: string[] = [];
  let extra = 0;
  for (let byte = 0; byte < 256; byte++) {
    const printable = (byte >= 33 && byte <= 126) || (byte >= 161 && byte <= 172) || (byte >= 174 && byte <= 255);
    chars.push(String.fromCodePoint(printable ? byte : 256 + extra++));
  }
  const merges = ['Ġ t', 'h e', 'Ġt he', 'Ġ a', 'i n', 'Ġ s', 'e r', 'Ġ c', 'o n', 'a t', 'Ġ o', 'e n'];
  const tokens = [...chars, ...merges.map(merge => merge.replace(' ', '')), '<|endoftext|>', '<|im_start|>', '<|im_end|>'];
  const types = tokens.map((_, i) => (i >= tokens.length - 3 ? 3 : 1));
  return {tokens, merges, types};
}

/** SentencePiece style: specials, the 256 byte tokens, and some scored pieces. */
function spmVocab(): {tokens: string[]; scores: number[]; types: number[]} {
  const pieces = ['▁the', '▁a', '▁of', '▁and', '▁to', '▁in', 'e', 't', 'a', 'o', 'n', 'i', 's', 'r', 'h', '▁', 'th', 'he', 'in', 'er', 'an', '▁t', '▁s', '▁c', 'on', 'at', 'en'];
  const tokens = ['<unk>', '<s>', '</s>'];
  const types = [2, 3, 3];
  const scores = [0, 0, 0];
  for (let byte = 0; byte < 256; byte++) {
    tokens.push(`<0x${byte.toString(16).toUpperCase().padStart(2, '0')}>`);
    types.push(6);
    scores.push(0);
  }
  pieces.forEach((piece, i) => {
    tokens.push(piece);
    types.push(1);
    scores.push(-i);
  });
  return {tokens, scores, types};
}

/** `heads`: other attention head counts (a shape a tensor-parallel split must refuse, say). */
export function writeTinyGguf(arch: TinyArch, seed = 7, heads: {nHead?: number; nHeadKv?: number} = {}): string {
  const nEmbd = 256;
  const nHead = heads.nHead ?? 4;
  const nHeadKv = heads.nHeadKv ?? 2;
  const headDim = 64;
  const nFf = 512;
  const nLayer = 2;
  const rand = random(seed);
  const metadata: [string, Value][] = [
    ['general.architecture', {type: 'str', value: arch}],
    ['general.name', {type: 'str', value: `tiny-${arch}`}],
    [`${arch}.block_count`, {type: 'u32', value: nLayer}],
    [`${arch}.context_length`, {type: 'u32', value: 2048}],
    [`${arch}.embedding_length`, {type: 'u32', value: nEmbd}],
    [`${arch}.feed_forward_length`, {type: 'u32', value: nFf}],
    [`${arch}.attention.head_count`, {type: 'u32', value: nHead}],
    [`${arch}.attention.head_count_kv`, {type: 'u32', value: nHeadKv}],
    [`${arch}.attention.layer_norm_rms_epsilon`, {type: 'f32', value: 1e-6}],
    [`${arch}.rope.freq_base`, {type: 'f32', value: arch === 'llama' ? 10_000 : 1_000_000}],
  ];
  if (arch === 'llama') {
    metadata.push([`${arch}.rope.dimension_count`, {type: 'u32', value: headDim}]);
    const vocab = spmVocab();
    metadata.push(
      ['tokenizer.ggml.model', {type: 'str', value: 'llama'}],
      ['tokenizer.ggml.tokens', {type: 'strs', value: vocab.tokens}],
      ['tokenizer.ggml.scores', {type: 'f32s', value: vocab.scores}],
      ['tokenizer.ggml.token_type', {type: 'i32s', value: vocab.types}],
      ['tokenizer.ggml.bos_token_id', {type: 'u32', value: 1}],
      ['tokenizer.ggml.eos_token_id', {type: 'u32', value: 2}],
      ['tokenizer.ggml.unknown_token_id', {type: 'u32', value: 0}],
    );
  } else {
    metadata.push([`${arch}.attention.key_length`, {type: 'u32', value: headDim}], [`${arch}.attention.value_length`, {type: 'u32', value: headDim}]);
    const vocab = bpeVocab();
    metadata.push(
      ['tokenizer.ggml.model', {type: 'str', value: 'gpt2'}],
      ['tokenizer.ggml.pre', {type: 'str', value: 'qwen2'}],
      ['tokenizer.ggml.tokens', {type: 'strs', value: vocab.tokens}],
      ['tokenizer.ggml.token_type', {type: 'i32s', value: vocab.types}],
      ['tokenizer.ggml.merges', {type: 'strs', value: vocab.merges}],
      ['tokenizer.ggml.eos_token_id', {type: 'u32', value: vocab.tokens.indexOf('<|endoftext|>')}],
      ['tokenizer.ggml.bos_token_id', {type: 'u32', value: vocab.tokens.indexOf('<|endoftext|>')}],
      ['tokenizer.ggml.add_bos_token', {type: 'bool', value: false}],
    );
  }
  const nVocab = (metadata.find(([key]) => key === 'tokenizer.ggml.tokens')![1] as {value: string[]}).value.length;

  const tensors: Tensor[] = [];
  const matrix = (name: string, rows: number, cols: number, scale: number) => {
    const data = new Float32Array(rows * cols);
    for (let i = 0; i < data.length; i++) {
      data[i] = rand() * 2 * scale;
    }
    tensors.push({name, dims: [cols, rows], data, quantize: true});
  };
  const vector = (name: string, size: number, around: number, spread: number) => {
    const data = new Float32Array(size);
    for (let i = 0; i < size; i++) {
      data[i] = around + rand() * 2 * spread;
    }
    tensors.push({name, dims: [size], data, quantize: false});
  };
  matrix('token_embd.weight', nVocab, nEmbd, 1);
  vector('output_norm.weight', nEmbd, 1, 0.1);
  matrix('output.weight', nVocab, nEmbd, 0.1);
  for (let il = 0; il < nLayer; il++) {
    const p = `blk.${il}`;
    vector(`${p}.attn_norm.weight`, nEmbd, 1, 0.1);
    matrix(`${p}.attn_q.weight`, nHead * headDim, nEmbd, 0.12);
    matrix(`${p}.attn_k.weight`, nHeadKv * headDim, nEmbd, 0.12);
    matrix(`${p}.attn_v.weight`, nHeadKv * headDim, nEmbd, 0.12);
    matrix(`${p}.attn_output.weight`, nEmbd, nHead * headDim, 0.12);
    if (arch === 'qwen2') {
      vector(`${p}.attn_q.bias`, nHead * headDim, 0, 0.1);
      vector(`${p}.attn_k.bias`, nHeadKv * headDim, 0, 0.1);
      vector(`${p}.attn_v.bias`, nHeadKv * headDim, 0, 0.1);
    }
    if (arch === 'qwen3') {
      vector(`${p}.attn_q_norm.weight`, headDim, 1, 0.1);
      vector(`${p}.attn_k_norm.weight`, headDim, 1, 0.1);
    }
    vector(`${p}.ffn_norm.weight`, nEmbd, 1, 0.1);
    matrix(`${p}.ffn_gate.weight`, nFf, nEmbd, 0.12);
    matrix(`${p}.ffn_up.weight`, nFf, nEmbd, 0.12);
    matrix(`${p}.ffn_down.weight`, nEmbd, nFf, 0.12);
  }

  const w = new Writer();
  w.push(Buffer.from('GGUF', 'latin1'));
  w.u32(3);
  w.u64(tensors.length);
  w.u64(metadata.length);
  for (const [key, value] of metadata) {
    w.str(key);
    switch (value.type) {
      case 'u32': w.u32(GGUF_U32); w.u32(value.value); break;
      case 'f32': w.u32(GGUF_F32); w.f32(value.value); break;
      case 'bool': w.u32(GGUF_BOOL); w.push(Buffer.from([value.value ? 1 : 0])); break;
      case 'str': w.u32(GGUF_STRING); w.str(value.value); break;
      case 'strs': w.u32(GGUF_ARRAY); w.u32(GGUF_STRING); w.u64(value.value.length); value.value.forEach(s => w.str(s)); break;
      case 'f32s': w.u32(GGUF_ARRAY); w.u32(GGUF_F32); w.u64(value.value.length); value.value.forEach(v => w.f32(v)); break;
      case 'i32s': w.u32(GGUF_ARRAY); w.u32(GGUF_I32); w.u64(value.value.length); value.value.forEach(v => w.i32(v)); break;
    }
  }
  const payloads = tensors.map(t => (t.quantize ? quantizeQ8_0(t.data) : Buffer.from(t.data.buffer)));
  let offset = 0;
  tensors.forEach((t, i) => {
    w.str(t.name);
    w.u32(t.dims.length);
    t.dims.forEach(d => w.u64(d));
    w.u32(t.quantize ? GGML_Q8_0 : GGML_F32);
    w.u64(offset);
    offset += Math.ceil(payloads[i]!.length / 32) * 32;
  });
  w.push(Buffer.alloc((32 - (w.size % 32)) % 32));
  payloads.forEach(payload => {
    w.push(payload);
    w.push(Buffer.alloc((32 - (payload.length % 32)) % 32));
  });
  const file = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'rbee-tiny-')), `tiny-${arch}.gguf`);
  fs.writeFileSync(file, Buffer.concat(w.chunks));
  return file;
}
