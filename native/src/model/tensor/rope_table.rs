//! Rotary position embedding on the device. The angles come from the CPU path's `Rope` (ggml's
//! f32 recurrence, frequency factors and linear scaling included), computed once for every
//! position of the context and kept on the device, so a forward pass only narrows the tables.

use candle_core::{Device, Tensor, D};

use crate::error::EngineResult;
use crate::model::rope::Rope;

pub struct RopeTable {
    /// (positions, n_rot / 2) each.
    cos: Tensor,
    sin: Tensor,
    n_rot: usize,
    neox: bool,
}

impl RopeTable {
    pub fn new(rope: &Rope, positions: usize, device: &Device) -> EngineResult<Self> {
        let half = rope.n_rot / 2;
        let mut cos = Vec::with_capacity(positions * half);
        let mut sin = Vec::with_capacity(positions * half);
        let mut pairs = Vec::with_capacity(rope.n_rot);
        for position in 0..positions {
            rope.cache(position, &mut pairs);
            for pair in pairs.chunks_exact(2) {
                cos.push(pair[0]);
                sin.push(pair[1]);
            }
        }
        Ok(Self {
            cos: Tensor::from_vec(cos, (positions, half), device)?,
            sin: Tensor::from_vec(sin, (positions, half), device)?,
            n_rot: rope.n_rot,
            neox: rope.neox,
        })
    }

    /// Rotates `x`, laid out (1, heads, tokens, head_dim) and contiguous, for positions `start..`.
    pub fn apply(&self, x: &Tensor, start: usize) -> EngineResult<Tensor> {
        let (_, _, tokens, head_dim) = x.dims4()?;
        let cos = self.cos.narrow(0, start, tokens)?;
        let sin = self.sin.narrow(0, start, tokens)?;
        // NEOX pairs dimension i with i + n_rot/2 (`rope`); the original layout pairs neighbours (`rope_i`).
        let rotate = |part: &Tensor| if self.neox { candle_nn::rotary_emb::rope(part, &cos, &sin) } else { candle_nn::rotary_emb::rope_i(part, &cos, &sin) };
        if self.n_rot == head_dim {
            return Ok(rotate(x)?);
        }
        // Only the first n_rot dimensions rotate; the rest pass through, as in ggml.
        let rotated = rotate(&x.narrow(D::Minus1, 0, self.n_rot)?.contiguous()?)?;
        let kept = x.narrow(D::Minus1, self.n_rot, head_dim - self.n_rot)?;
        // The cache and the attention reshapes need a contiguous result, which `cat` of a view is not.
        Ok(Tensor::cat(&[&rotated, &kept], D::Minus1)?.contiguous()?)
    }
}
