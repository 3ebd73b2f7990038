//! Hyperparameters from the GGUF metadata, read the way llama.cpp reads them
//! (llama-model.cpp's common keys, then each architecture's own).

use std::collections::HashMap;

use candle_core::quantized::gguf_file::{TensorInfo, Value};

use crate::error::{EngineError, EngineResult, ErrorCode};
use crate::gguf::Metadata;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arch {
    Llama,
    Qwen2,
    Qwen3,
    Gemma3,
}

impl Arch {
    pub fn name(self) -> &'static str {
        match self {
            Arch::Llama => "llama",
            Arch::Qwen2 => "qwen2",
            Arch::Qwen3 => "qwen3",
            Arch::Gemma3 => "gemma3",
        }
    }
}

pub const SUPPORTED_ARCHITECTURES: &[&str] = &["gemma3", "llama", "qwen2", "qwen3"];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Activation {
    /// SwiGLU: silu(gate) * up.
    Silu,
    /// GeGLU with the tanh GELU: gelu(gate) * up.
    Gelu,
}

#[derive(Debug, Clone)]
pub struct Config {
    pub arch: Arch,
    pub n_layer: usize,
    pub n_embd: usize,
    pub n_head: usize,
    pub n_head_kv: usize,
    pub head_dim: usize,
    pub n_vocab: usize,
    pub n_rot: usize,
    pub eps: f32,
    pub rope_base: f32,
    pub rope_freq_scale: f32,
    pub rope_base_swa: f32,
    /// NEOX rotation (pairs i, i + n_rot/2) rather than adjacent pairs.
    pub rope_neox: bool,
    /// Sliding-window attention: the window, and which layers use it.
    pub swa_window: Option<usize>,
    pub swa_layers: Vec<bool>,
    /// The `kq_scale` of llama.cpp's attention (1 when Q is pre-scaled, as for Gemma 3).
    pub kq_scale: f32,
    /// Gemma 3 scales Q by this after RoPE (llama.cpp's `f_attention_scale`).
    pub q_scale: Option<f32>,
    /// Gemma scales the token embeddings by sqrt(n_embd).
    pub embed_scale: Option<f32>,
    pub final_logit_softcap: Option<f32>,
    pub activation: Activation,
    pub train_context: usize,
}

fn unsupported(message: String) -> EngineError {
    EngineError::new(ErrorCode::UnsupportedArchitecture, message)
}

impl Config {
    pub fn from_gguf(metadata: &HashMap<String, Value>, tensors: &HashMap<String, TensorInfo>) -> EngineResult<Self> {
        let md = Metadata(metadata);
        let arch_name = md.string("general.architecture").ok_or_else(|| EngineError::invalid_gguf("general.architecture is missing"))?;
        let arch = match arch_name {
            "llama" => Arch::Llama,
            "qwen2" => Arch::Qwen2,
            "qwen3" => Arch::Qwen3,
            "gemma3" => Arch::Gemma3,
            other => {
                return Err(unsupported(format!(
                    "architecture \"{other}\" is not supported by the candle engine (supported: {})",
                    SUPPORTED_ARCHITECTURES.join(", ")
                )))
            }
        };
        let key = |k: &str| format!("{arch_name}.{k}");
        let n_layer = md.usize(&key("block_count"))?;
        let n_embd = md.usize(&key("embedding_length"))?;
        let n_head =
            md.usize_or_first(&key("attention.head_count"))?.ok_or_else(|| EngineError::invalid_gguf(format!("{} is missing", key("attention.head_count"))))?;
        let n_head_kv = md.usize_or_first(&key("attention.head_count_kv"))?.unwrap_or(n_head);
        if n_head == 0 || n_head_kv == 0 || n_head % n_head_kv != 0 {
            return Err(EngineError::invalid_gguf(format!("{n_head} attention heads cannot share {n_head_kv} KV heads")));
        }
        let head_dim = md.u64_opt(&key("attention.key_length"))?.map(|v| v as usize).unwrap_or(n_embd / n_head);
        let v_dim = md.u64_opt(&key("attention.value_length"))?.map(|v| v as usize).unwrap_or(n_embd / n_head);
        if v_dim != head_dim {
            return Err(unsupported(format!("{arch_name} with key length {head_dim} and value length {v_dim} (they must be equal)")));
        }
        let n_rot = md.u64_opt(&key("rope.dimension_count"))?.map(|v| v as usize).unwrap_or(head_dim);
        if n_rot > head_dim || n_rot % 2 != 0 {
            return Err(EngineError::invalid_gguf(format!("rope dimension count {n_rot} does not fit head size {head_dim}")));
        }
        let eps = md
            .f64_opt(&key("attention.layer_norm_rms_epsilon"))?
            .ok_or_else(|| EngineError::invalid_gguf(format!("{} is missing", key("attention.layer_norm_rms_epsilon"))))? as f32;
        let rope_base = md.f64_opt(&key("rope.freq_base"))?.unwrap_or(10_000.0) as f32;
        let scaling = md.string(&key("rope.scaling.type")).unwrap_or("linear");
        if !matches!(scaling, "linear" | "none") {
            return Err(unsupported(format!("{arch_name} with rope scaling \"{scaling}\" (only linear is implemented)")));
        }
        let factor = match md.f64_opt(&key("rope.scaling.factor"))? {
            Some(f) => f,
            None => md.f64_opt(&key("rope.scale_linear"))?.unwrap_or(0.0),
        } as f32;
        let rope_freq_scale = if factor == 0.0 || scaling == "none" { 1.0 } else { 1.0 / factor };
        if md.u64_opt(&key("expert_count"))?.unwrap_or(0) > 0 {
            return Err(unsupported(format!("{arch_name} with experts (mixture of experts) is not implemented")));
        }
        let train_context = md.u64_opt(&key("context_length"))?.map(|v| v as usize).unwrap_or(4096);
        let n_vocab =
            tensors.get("token_embd.weight").map(|t| t.shape.dims()[0]).ok_or_else(|| EngineError::invalid_gguf("tensor token_embd.weight is missing"))?;

        let default_kq = 1.0 / (head_dim as f32).sqrt();
        let mut config = Config {
            arch,
            n_layer,
            n_embd,
            n_head,
            n_head_kv,
            head_dim,
            n_vocab,
            n_rot,
            eps,
            rope_base,
            rope_freq_scale,
            rope_base_swa: 10_000.0,
            rope_neox: arch != Arch::Llama,
            swa_window: None,
            swa_layers: vec![false; n_layer],
            kq_scale: default_kq,
            q_scale: None,
            embed_scale: None,
            final_logit_softcap: None,
            activation: Activation::Silu,
            train_context,
        };

        if arch == Arch::Gemma3 {
            config.activation = Activation::Gelu;
            config.embed_scale = Some((n_embd as f32).sqrt());
            config.kq_scale = 1.0;
            // ref: gemma_pytorch config.py; llama.cpp's gemma3 load_arch_hparams
            config.q_scale = Some(if n_layer == 62 { 1.0 / ((n_embd / n_head) as f32).sqrt() } else { 1.0 / (head_dim as f32).sqrt() });
            config.final_logit_softcap = md.f64_opt(&key("final_logit_softcapping"))?.map(|v| v as f32).filter(|v| *v != 0.0);
            if let Some(window) = md.u64_opt(&key("attention.sliding_window"))?.filter(|w| *w > 0) {
                config.swa_window = Some(window as usize);
                config.rope_base_swa = md.f64_opt(&key("rope.freq_base_swa"))?.unwrap_or(10_000.0) as f32;
                match md.get(&key("attention.sliding_window_pattern")) {
                    Some(Value::Array(flags)) => {
                        for (il, flag) in flags.iter().enumerate().take(n_layer) {
                            config.swa_layers[il] = matches!(flag, Value::Bool(true));
                        }
                    }
                    _ => {
                        let period = md.u64_opt(&key("attention.sliding_window_pattern"))?.unwrap_or(6) as usize;
                        for il in 0..n_layer {
                            config.swa_layers[il] = period == 0 || il % period < period - 1;
                        }
                    }
                }
            }
        }
        Ok(config)
    }

    pub fn is_swa(&self, layer: usize) -> bool {
        self.swa_window.is_some() && self.swa_layers[layer]
    }

    /// A layer's query and key projections must produce the heads the metadata promises: a
    /// mismatched file would otherwise fail deep inside the first forward pass.
    pub fn check_attention_shape(&self, layer: usize, q_features: usize, k_features: usize) -> EngineResult<()> {
        if q_features != self.n_head * self.head_dim || k_features != self.n_head_kv * self.head_dim {
            return Err(EngineError::invalid_gguf(format!(
                "layer {layer}: attention projections of {q_features} and {k_features} do not match {} heads of {} ({} KV heads)",
                self.n_head, self.head_dim, self.n_head_kv
            )));
        }
        Ok(())
    }
}
