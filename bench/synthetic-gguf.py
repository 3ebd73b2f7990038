#!/usr/bin/env python3
"""
Writes a Llama-3-8B-shaped Q4_K_M GGUF with random weights, for speed benchmarks on a GPU machine
that cannot download a real 8B model: the time a decode step takes depends on the shapes and the
quantization, not on the values. The shape and the real Llama 3 tokenizer come from llama.cpp's
models/ggml-vocab-llama-bpe.gguf (which carries Llama 3 8B's hyperparameters and no tensors).

Quantization as llama.cpp's Q4_K_M lays out an 8B Llama: Q4_K everywhere, Q6_K for the output
matrix and for attn_v / ffn_down in half of the layers (the first, the last, and every third of
the rest, as llama-quantize picks them), f32 norms.

Blocks are random but valid: small positive f16 scales (no inf/NaN), random 4/6-bit quants, so
activations stay finite through every layer.

  python3 bench/synthetic-gguf.py --vocab <llama.cpp>/models/ggml-vocab-llama-bpe.gguf --out 8b.gguf
  python3 bench/synthetic-gguf.py --vocab ... --out tiny.gguf --layers 2 --embd 256 --ffn 512 --heads 4 --kv-heads 2
  --ffn-type f16: gate/up/down as F16 (a type the candle graph path has no kernel for: its bad-input check)

Needs numpy and llama.cpp's gguf-py on PYTHONPATH.
"""
import argparse
import sys

import numpy as np
import gguf

QK_K = 256
SCALE = np.float16(2.0 ** -11)


def q4_k(rows: int, cols: int, rng: np.random.Generator) -> np.ndarray:
    """Q4_K blocks (144 bytes per 256 weights): d, dmin (f16), 12 bytes of 6-bit scales/mins, 128 bytes of nibbles."""
    blocks = rows * cols // QK_K
    data = rng.integers(0, 256, size=(blocks, 144), dtype=np.uint8)
    header = np.array([SCALE, SCALE / np.float16(2)], dtype=np.float16).view(np.uint8)
    data[:, 0:4] = header
    return data.reshape(rows, cols // QK_K * 144)


def q6_k(rows: int, cols: int, rng: np.random.Generator) -> np.ndarray:
    """Q6_K blocks (210 bytes per 256 weights): 128 bytes low bits, 64 high bits, 16 int8 scales, d (f16)."""
    blocks = rows * cols // QK_K
    data = rng.integers(0, 256, size=(blocks, 210), dtype=np.uint8)
    data[:, 192:208] = rng.integers(1, 32, size=(blocks, 16), dtype=np.uint8)  # positive int8 scales
    data[:, 208:210] = np.array([SCALE], dtype=np.float16).view(np.uint8)
    return data.reshape(rows, cols // QK_K * 210)


def uses_q6_k(layer: int, layers: int) -> bool:
    """llama-quantize's Q4_K_M choice for attn_v and ffn_down: more bits for the first and last eighth, and every third layer."""
    return layer < layers // 8 or layer >= 7 * layers // 8 or (layer - layers // 8) % 3 == 2


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--vocab', required=True, help='llama.cpp models/ggml-vocab-llama-bpe.gguf')
    parser.add_argument('--out', required=True)
    parser.add_argument('--layers', type=int)
    parser.add_argument('--embd', type=int)
    parser.add_argument('--ffn', type=int)
    parser.add_argument('--heads', type=int)
    parser.add_argument('--kv-heads', type=int)
    parser.add_argument('--seed', type=int, default=1)
    parser.add_argument('--ffn-type', choices=['q4_k_m', 'f16'], default='q4_k_m')
    args = parser.parse_args()

    reader = gguf.GGUFReader(args.vocab)
    meta = {name: field.contents() for name, field in reader.fields.items() if not name.startswith('GGUF.')}
    layers = args.layers or meta['llama.block_count']
    embd = args.embd or meta['llama.embedding_length']
    ffn = args.ffn or meta['llama.feed_forward_length']
    heads = args.heads or meta['llama.attention.head_count']
    kv_heads = args.kv_heads or meta['llama.attention.head_count_kv']
    vocab = len(meta['tokenizer.ggml.tokens'])
    head_dim = embd // heads
    if embd % QK_K or ffn % QK_K:
        print(f'embd ({embd}) and ffn ({ffn}) must be multiples of {QK_K}', file=sys.stderr)
        return 2

    writer = gguf.GGUFWriter(args.out, 'llama')
    overrides = {
        'llama.block_count': layers, 'llama.embedding_length': embd, 'llama.feed_forward_length': ffn,
        'llama.attention.head_count': heads, 'llama.attention.head_count_kv': kv_heads,
        'llama.rope.dimension_count': head_dim, 'general.file_type': int(gguf.LlamaFileType.MOSTLY_Q4_K_M),
        'general.name': f'synthetic-llama3-{layers}l-{embd}',
    }
    for name, field in reader.fields.items():
        if name.startswith('GGUF.') or name == 'general.architecture':
            continue
        value = overrides.get(name, meta[name])
        sub_type = field.types[1] if len(field.types) > 1 else None
        writer.add_key_value(name, value, field.types[0], sub_type=sub_type)

    rng = np.random.default_rng(args.seed)
    norm = np.ones(embd, dtype=np.float32)
    q4, q6 = gguf.GGMLQuantizationType.Q4_K, gguf.GGMLQuantizationType.Q6_K
    writer.add_tensor('token_embd.weight', q4_k(vocab, embd, rng), raw_dtype=q4)
    for layer in range(layers):
        prefix = f'blk.{layer}'
        high = uses_q6_k(layer, layers)
        writer.add_tensor(f'{prefix}.attn_norm.weight', norm)
        writer.add_tensor(f'{prefix}.attn_q.weight', q4_k(embd, embd, rng), raw_dtype=q4)
        writer.add_tensor(f'{prefix}.attn_k.weight', q4_k(kv_heads * head_dim, embd, rng), raw_dtype=q4)
        writer.add_tensor(f'{prefix}.attn_v.weight', (q6_k if high else q4_k)(kv_heads * head_dim, embd, rng), raw_dtype=q6 if high else q4)
        writer.add_tensor(f'{prefix}.attn_output.weight', q4_k(embd, embd, rng), raw_dtype=q4)
        writer.add_tensor(f'{prefix}.ffn_norm.weight', norm)
        if args.ffn_type == 'f16':
            for part, shape in (('ffn_gate', (ffn, embd)), ('ffn_up', (ffn, embd)), ('ffn_down', (embd, ffn))):
                writer.add_tensor(f'{prefix}.{part}.weight', (rng.standard_normal(shape) * 0.02).astype(np.float16))
        else:
            writer.add_tensor(f'{prefix}.ffn_gate.weight', q4_k(ffn, embd, rng), raw_dtype=q4)
            writer.add_tensor(f'{prefix}.ffn_up.weight', q4_k(ffn, embd, rng), raw_dtype=q4)
            writer.add_tensor(f'{prefix}.ffn_down.weight', (q6_k if high else q4_k)(embd, ffn, rng), raw_dtype=q6 if high else q4)
    writer.add_tensor('output_norm.weight', norm)
    writer.add_tensor('output.weight', q6_k(vocab, embd, rng), raw_dtype=q6)

    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    print(f'wrote {args.out}: {layers} layers, embd {embd}, ffn {ffn}, heads {heads}/{kv_heads}, vocab {vocab}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
