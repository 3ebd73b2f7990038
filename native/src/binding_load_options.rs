//! `LoadOptions`: what `Model.load` takes.

use napi_derive::napi;

#[napi(object)]
#[derive(Debug, Clone)]
pub struct LoadOptions {
    /// A GGUF file.
    pub path: String,
    /// cpu (the default), cuda:N or metal.
    pub device: Option<String>,
    /// Positions in the KV cache; default min(the model's training context, 4096).
    pub context_size: Option<u32>,
    /// CPU threads for the matrix multiplications and attention (first load in a process wins).
    pub threads: Option<u32>,
    /// The forward pass: ggml (llama.cpp's CPU kernels, CPU only), tensor (Candle ops, any
    /// device) or graph (rbee's CUDA kernels as one CUDA graph per token, CUDA builds only).
    /// Default: RBEE_CANDLE_FORWARD, else ggml on the CPU and tensor on GPUs.
    pub forward: Option<String>,
    /// Streams served at once, batched (each with a KV cache of `contextSize`); default 1. The
    /// graph path serves one for now (`info.parallel` says what the model got).
    pub parallel: Option<u32>,
}
