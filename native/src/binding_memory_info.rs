//! `MemoryInfo`: the figures a worker's heartbeat reports.

use napi_derive::napi;

#[napi(object)]
#[derive(Debug, Clone)]
pub struct MemoryInfo {
    /// The process's resident set, bytes (0 where the platform does not say).
    pub rss: f64,
    /// GPU memory in use and in total, bytes (CUDA builds on a CUDA device only).
    pub vram_used: Option<f64>,
    pub vram_total: Option<f64>,
    /// The model's weights and KV cache, bytes.
    pub weight_bytes: f64,
    pub kv_cache_bytes: f64,
}
