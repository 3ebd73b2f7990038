//! The per-layer KV cache on the device: allocated once for the whole context and written in
//! place (`slice_set`), so a decode step copies one position per layer, never the cache. Laid
//! out (kv_heads, capacity, head_dim): a prefix of positions is then a strided view that the
//! batched matrix multiplications read directly.

use candle_core::{DType, Device, Tensor};

use crate::error::{EngineError, EngineResult};

/// Read at load: `f32` (the default) or `f16` (half the memory and bandwidth, at some precision).
pub const KV_DTYPE_ENV: &str = "RBEE_CANDLE_KV_DTYPE";

pub fn kv_dtype_from_env() -> EngineResult<DType> {
    match std::env::var(KV_DTYPE_ENV) {
        Err(_) => Ok(DType::F32),
        Ok(value) => match value.as_str() {
            "" | "f32" => Ok(DType::F32),
            "f16" => Ok(DType::F16),
            other => Err(EngineError::invalid_request(format!("{KV_DTYPE_ENV}: unknown KV cache type \"{other}\": expected f32 or f16"))),
        },
    }
}

pub struct LayerKvCache {
    k: Tensor,
    v: Tensor,
}

impl LayerKvCache {
    pub fn new(kv_heads: usize, capacity: usize, head_dim: usize, dtype: DType, device: &Device) -> EngineResult<Self> {
        let shape = (kv_heads, capacity, head_dim);
        Ok(Self { k: Tensor::zeros(shape, dtype, device)?, v: Tensor::zeros(shape, dtype, device)? })
    }

    pub fn dtype(&self) -> DType {
        self.k.dtype()
    }

    /// Writes K and V, each (kv_heads, tokens, head_dim) and contiguous, at positions `start..`.
    pub fn store(&self, k: &Tensor, v: &Tensor, start: usize) -> EngineResult<()> {
        self.k.slice_set(&k.to_dtype(self.dtype())?, 1, start)?;
        self.v.slice_set(&v.to_dtype(self.dtype())?, 1, start)?;
        Ok(())
    }

    /// K and V of positions `first..first + len`, as (kv_heads, len, head_dim) views.
    pub fn window(&self, first: usize, len: usize) -> EngineResult<(Tensor, Tensor)> {
        Ok((self.k.narrow(1, first, len)?, self.v.narrow(1, first, len)?))
    }

    pub fn bytes(&self) -> usize {
        (self.k.elem_count() + self.v.elem_count()) * self.dtype().size_in_bytes()
    }
}
