//! `ModelInfo`: what a loaded model is.

use napi_derive::napi;

use crate::engine;

#[napi(object)]
#[derive(Debug, Clone)]
pub struct ModelInfo {
    pub architecture: String,
    pub name: Option<String>,
    pub device: String,
    /// The forward pass this model runs with: ggml, tensor or graph.
    pub forward: String,
    pub context_size: u32,
    pub train_context_size: u32,
    pub vocab_size: u32,
    pub layers: u32,
    pub embedding_size: u32,
    pub bos_token: Option<u32>,
    pub eos_token: Option<u32>,
    /// Tokens that end a generation (EOS, <end_of_turn>, <|eot_id|>, ...).
    pub eog_tokens: Vec<u32>,
    /// The GGUF tokenizer model: llama (SentencePiece) or gpt2 (byte-level BPE).
    pub tokenizer: String,
    pub has_chat_template: bool,
    pub weight_bytes: f64,
    pub kv_cache_bytes: f64,
    pub file_bytes: f64,
    /// Streams the engine serves at once (one KV cache each); `kvCacheBytes` counts them all.
    pub parallel: u32,
}

impl From<&engine::ModelInfo> for ModelInfo {
    fn from(info: &engine::ModelInfo) -> Self {
        Self {
            architecture: info.architecture.clone(),
            name: info.name.clone(),
            device: info.device.clone(),
            forward: info.forward.as_str().to_string(),
            context_size: info.context_size as u32,
            train_context_size: info.train_context_size as u32,
            vocab_size: info.vocab_size as u32,
            layers: info.layers as u32,
            embedding_size: info.embedding_size as u32,
            bos_token: info.bos_token,
            eos_token: info.eos_token,
            eog_tokens: info.eog_tokens.clone(),
            tokenizer: info.tokenizer.clone(),
            has_chat_template: info.has_chat_template,
            weight_bytes: info.weight_bytes as f64,
            kv_cache_bytes: info.kv_cache_bytes as f64,
            file_bytes: info.file_bytes as f64,
            parallel: info.parallel as u32,
        }
    }
}
