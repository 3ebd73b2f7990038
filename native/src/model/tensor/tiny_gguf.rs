//! Random-weight GGUFs in memory, for comparing the two forward paths without a download.
//! `TINY` is shaped like test/native/tiny-gguf.ts, with the pieces each architecture can have
//! switched on (Gemma 3's extra norms, tied embeddings, sliding window and soft-capping; Llama's
//! interleaved RoPE with frequency factors; Qwen 2's biases and, here, a partial rotation; Qwen 3's
//! Q/K norms), so that both paths are compared on every branch they have. `GEMMA_270M` is Gemma 3
//! 270M's shape and quantized types, for speed measurements where the real file is not at hand.

use std::io::Cursor;

use candle_core::quantized::gguf_file::{self, Value};
use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::{Device, Tensor};

use crate::model::config::Arch;

#[derive(Debug, Clone, Copy)]
pub struct Dims {
    pub n_layer: usize,
    pub n_embd: usize,
    pub n_head: usize,
    pub n_head_kv: usize,
    pub head_dim: usize,
    pub n_ff: usize,
    pub n_vocab: usize,
    /// Gemma 3 only: the sliding window, and every how many layers one is global.
    pub window: usize,
    pub global_every: usize,
}

/// Three layers give Gemma 3 windowed, global, windowed.
pub const TINY: Dims = Dims { n_layer: 3, n_embd: 256, n_head: 4, n_head_kv: 2, head_dim: 64, n_ff: 512, n_vocab: 320, window: 5, global_every: 2 };

pub const GEMMA_270M: Dims =
    Dims { n_layer: 18, n_embd: 640, n_head: 4, n_head_kv: 1, head_dim: 256, n_ff: 2048, n_vocab: 262_144, window: 512, global_every: 6 };

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Matrices {
    /// f32: both paths multiply exactly alike, so what differs is the rest of the decoder.
    Float,
    /// A mix of GGUF quantized types (Q8_0, Q5_0, Q4_0, Q4_K, Q6_K).
    Quantized,
    /// The types of Gemma 3 270M's Q4_K_M file.
    Gemma270M,
}

/// The type of each matrix: (token_embd, output, q, k, v, attn_output, gate and up, down).
struct MatrixTypes([GgmlDType; 8]);

impl Matrices {
    fn types(self) -> MatrixTypes {
        use GgmlDType::*;
        MatrixTypes(match self {
            Matrices::Float => [F32; 8],
            Matrices::Quantized => [Q8_0, Q6K, Q8_0, Q5_0, Q4_0, Q8_0, Q4K, Q6K],
            Matrices::Gemma270M => [Q8_0, Q6K, Q5_0, Q5_0, Q8_0, Q4K, Q5_0, Q6K],
        })
    }
}

struct Builder {
    state: u32,
    metadata: Vec<(String, Value)>,
    tensors: Vec<(String, QTensor)>,
}

impl Builder {
    fn uniform(&mut self) -> f32 {
        self.state = self.state.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
        self.state as f32 / 4_294_967_296.0 - 0.5
    }

    fn meta(&mut self, key: &str, value: Value) {
        self.metadata.push((key.to_string(), value));
    }

    /// A (rows, cols) matrix, stored as GGUF does: dims (cols, rows) on disk, (rows, cols) loaded.
    fn matrix(&mut self, name: &str, rows: usize, cols: usize, scale: f32, dtype: GgmlDType) {
        let data: Vec<f32> = (0..rows * cols).map(|_| self.uniform() * 2.0 * scale).collect();
        let tensor = Tensor::from_vec(data, (rows, cols), &Device::Cpu).unwrap();
        self.tensors.push((name.to_string(), QTensor::quantize(&tensor, dtype).unwrap()));
    }

    fn vector(&mut self, name: &str, size: usize, around: f32, spread: f32) {
        let data: Vec<f32> = (0..size).map(|_| around + self.uniform() * 2.0 * spread).collect();
        let tensor = Tensor::from_vec(data, size, &Device::Cpu).unwrap();
        self.tensors.push((name.to_string(), QTensor::quantize(&tensor, GgmlDType::F32).unwrap()));
    }
}

/// The GGUF file's bytes.
pub fn tiny_gguf(arch: Arch, dims: Dims, matrices: Matrices, seed: u32) -> Vec<u8> {
    let Dims { n_layer, n_embd, n_head, n_head_kv, head_dim, n_ff, n_vocab, .. } = dims;
    let MatrixTypes([embd_type, output_type, q_type, k_type, v_type, o_type, ffn_type, down_type]) = matrices.types();
    let name = arch.name();
    let mut b = Builder { state: seed, metadata: Vec::new(), tensors: Vec::new() };
    let key = |k: &str| format!("{name}.{k}");
    b.meta("general.architecture", Value::String(name.to_string()));
    b.meta(&key("block_count"), Value::U32(n_layer as u32));
    b.meta(&key("context_length"), Value::U32(32_768));
    b.meta(&key("embedding_length"), Value::U32(n_embd as u32));
    b.meta(&key("feed_forward_length"), Value::U32(n_ff as u32));
    b.meta(&key("attention.head_count"), Value::U32(n_head as u32));
    b.meta(&key("attention.head_count_kv"), Value::U32(n_head_kv as u32));
    b.meta(&key("attention.key_length"), Value::U32(head_dim as u32));
    b.meta(&key("attention.value_length"), Value::U32(head_dim as u32));
    b.meta(&key("attention.layer_norm_rms_epsilon"), Value::F32(1e-6));
    b.meta(&key("rope.freq_base"), Value::F32(if arch == Arch::Llama { 10_000.0 } else { 1_000_000.0 }));
    if arch == Arch::Qwen2 {
        b.meta(&key("rope.dimension_count"), Value::U32((head_dim / 2) as u32));
    }
    if arch == Arch::Gemma3 {
        b.meta(&key("attention.sliding_window"), Value::U32(dims.window as u32));
        b.meta(&key("attention.sliding_window_pattern"), Value::U32(dims.global_every as u32));
        if matrices != Matrices::Gemma270M {
            b.meta(&key("rope.freq_base_swa"), Value::F32(10_000.0));
            b.meta(&key("final_logit_softcapping"), Value::F32(30.0));
        }
    }

    b.matrix("token_embd.weight", n_vocab, n_embd, 1.0, embd_type);
    b.vector("output_norm.weight", n_embd, 1.0, 0.1);
    if arch != Arch::Gemma3 {
        b.matrix("output.weight", n_vocab, n_embd, 0.1, output_type);
    }
    if arch == Arch::Llama {
        b.vector("rope_freqs.weight", head_dim / 2, 1.5, 0.5);
    }
    for il in 0..n_layer {
        let p = format!("blk.{il}");
        b.vector(&format!("{p}.attn_norm.weight"), n_embd, 1.0, 0.1);
        b.matrix(&format!("{p}.attn_q.weight"), n_head * head_dim, n_embd, 0.12, q_type);
        b.matrix(&format!("{p}.attn_k.weight"), n_head_kv * head_dim, n_embd, 0.12, k_type);
        b.matrix(&format!("{p}.attn_v.weight"), n_head_kv * head_dim, n_embd, 0.12, v_type);
        b.matrix(&format!("{p}.attn_output.weight"), n_embd, n_head * head_dim, 0.12, o_type);
        if arch == Arch::Qwen2 {
            b.vector(&format!("{p}.attn_q.bias"), n_head * head_dim, 0.0, 0.1);
            b.vector(&format!("{p}.attn_k.bias"), n_head_kv * head_dim, 0.0, 0.1);
            b.vector(&format!("{p}.attn_v.bias"), n_head_kv * head_dim, 0.0, 0.1);
        }
        if matches!(arch, Arch::Qwen3 | Arch::Gemma3) {
            b.vector(&format!("{p}.attn_q_norm.weight"), head_dim, 1.0, 0.1);
            b.vector(&format!("{p}.attn_k_norm.weight"), head_dim, 1.0, 0.1);
        }
        if arch == Arch::Gemma3 {
            b.vector(&format!("{p}.post_attention_norm.weight"), n_embd, 1.0, 0.1);
            b.vector(&format!("{p}.post_ffw_norm.weight"), n_embd, 1.0, 0.1);
        }
        b.vector(&format!("{p}.ffn_norm.weight"), n_embd, 1.0, 0.1);
        b.matrix(&format!("{p}.ffn_gate.weight"), n_ff, n_embd, 0.12, ffn_type);
        b.matrix(&format!("{p}.ffn_up.weight"), n_ff, n_embd, 0.12, ffn_type);
        b.matrix(&format!("{p}.ffn_down.weight"), n_embd, n_ff, 0.12, down_type);
    }

    let metadata: Vec<(&str, &Value)> = b.metadata.iter().map(|(k, v)| (k.as_str(), v)).collect();
    let tensors: Vec<(&str, &QTensor)> = b.tensors.iter().map(|(k, t)| (k.as_str(), t)).collect();
    let mut out = Cursor::new(Vec::new());
    gguf_file::write(&mut out, &metadata, &tensors).unwrap();
    out.into_inner()
}
