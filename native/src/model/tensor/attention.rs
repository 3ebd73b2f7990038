//! Causal (and sliding-window) attention from batched matrix multiplications over the KV cache.
//! Grouped-query heads are folded into the rows of their KV head's product, so K and V are read
//! in place and never repeated per query head.

use candle_core::{DType, Device, Tensor};

use crate::error::EngineResult;

#[derive(Debug, Clone, Copy)]
pub struct HeadShape {
    pub n_head: usize,
    pub n_head_kv: usize,
    pub head_dim: usize,
}

/// The cached positions a batch of queries can see: `first..first + len`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeySpan {
    pub first: usize,
    pub len: usize,
}

impl KeySpan {
    /// Queries at `start..start + tokens` see keys up to their own position and, in a window of
    /// `w`, none older than `position - w + 1`: the span starts where the first query's window does.
    pub fn new(start: usize, tokens: usize, window: Option<usize>) -> Self {
        let first = window.map_or(0, |w| (start + 1).saturating_sub(w));
        Self { first, len: start + tokens - first }
    }
}

/// The additive mask, (tokens, span.len), for queries at `start..` over `span`; None for a
/// single query, which sees every key of its span.
pub fn mask(start: usize, tokens: usize, span: KeySpan, window: Option<usize>, device: &Device) -> EngineResult<Option<Tensor>> {
    if tokens == 1 {
        return Ok(None);
    }
    // Built on the device from two ranges: distance = query position - key position.
    let queries = Tensor::arange(0f32, tokens as f32, device)?.affine(1.0, (start - span.first) as f64)?.reshape((tokens, 1))?;
    let keys = Tensor::arange(0f32, span.len as f32, device)?.reshape((1, span.len))?;
    let distance = queries.broadcast_sub(&keys)?;
    let shape = (tokens, span.len);
    let blocked = Tensor::new(f32::NEG_INFINITY, device)?.broadcast_as(shape)?;
    let open = Tensor::zeros((), DType::F32, device)?.broadcast_as(shape)?;
    let mut mask = distance.lt(0f64)?.where_cond(&blocked, &open)?;
    if let Some(w) = window {
        mask = distance.ge(w as f64)?.where_cond(&blocked, &mask)?;
    }
    Ok(Some(mask))
}

/// q: (1, n_head, tokens, head_dim), contiguous and already scaled; keys and values:
/// (n_head_kv, span, head_dim) views of the cache. Returns (tokens, n_head * head_dim).
pub fn attend(q: &Tensor, keys: &Tensor, values: &Tensor, mask: Option<&Tensor>, shape: HeadShape) -> EngineResult<Tensor> {
    let (_, _, tokens, head_dim) = q.dims4()?;
    let span = keys.dim(1)?;
    let group = shape.n_head / shape.n_head_kv;
    // Heads h = g * group + j share KV head g, so (n_head, tokens) folds into (n_head_kv, group * tokens).
    let q = q.reshape((shape.n_head_kv, group * tokens, head_dim))?.to_dtype(keys.dtype())?;
    let mut scores = q.matmul(&keys.t()?)?.to_dtype(DType::F32)?;
    if let Some(mask) = mask {
        scores = scores.reshape((shape.n_head_kv, group, tokens, span))?.broadcast_add(mask)?.reshape((shape.n_head_kv, group * tokens, span))?;
    }
    let probs = candle_nn::ops::softmax_last_dim(&scores)?;
    let out = probs.to_dtype(values.dtype())?.matmul(values)?.to_dtype(DType::F32)?;
    Ok(out.reshape((shape.n_head, tokens, head_dim))?.transpose(0, 1)?.contiguous()?.reshape((tokens, shape.n_head * head_dim))?)
}
