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
    /// Default: RBEE_CANDLE_FORWARD, else ggml on the CPU, graph on CUDA (tensor where the graph path has no kernels for the model) and tensor on Metal.
    pub forward: Option<String>,
    /// Rank 0 of a tensor-parallel group: on the CPU the ggml path, sharded; on cuda:N the graph
    /// path, one GPU a rank (its shards opened with the same device kind and `parallel`). With
    /// only `blocks` (CPU), one process computing exactly what such a group computes.
    pub tensor_parallel: Option<TensorParallelOptions>,
    /// Streams served at once, batched (each with a KV cache of `contextSize`); default 1. A
    /// tensor-parallel group on the CPU serves one (`info.parallel` says what the model got).
    pub parallel: Option<u32>,
}

#[napi(object)]
#[derive(Debug, Clone)]
pub struct TensorParallelOptions {
    /// The shards' endpoints (127.0.0.1:PORT), shard 1 first: this process is rank 0.
    pub shards: Option<Vec<String>>,
    /// The group's secret, which every shard was given too.
    pub secret: Option<String>,
    /// The deadline of each collective (default 5000 ms).
    pub timeout_ms: Option<u32>,
    /// How long to wait for the shards to load and accept (default 300000 ms).
    pub wait_ms: Option<u32>,
    /// Without shards: the single-process reference of a group of this many ranks.
    pub blocks: Option<u32>,
}
