//! Activation rows quantized as ggml quantizes them before an integer dot product.

use half::f16;

use super::{QK8_0, QK_K};

#[inline]
pub(crate) fn f16_at(bytes: &[u8], at: usize) -> f32 {
    f16::from_bits(u16::from_le_bytes([bytes[at], bytes[at + 1]])).to_f32()
}

/// hsum_float_8: (4..8 + 0..4), then (0+2, 1+3), then (0+1).
#[inline]
pub(crate) fn hsum8(v: &[f32; 8]) -> f32 {
    let r = [v[4] + v[0], v[5] + v[1], v[6] + v[2], v[7] + v[3]];
    let s = [r[0] + r[2], r[1] + r[3]];
    s[0] + s[1]
}

/// Activation rows quantized to Q8_0: 32 int8 per block and the block's f16 scale (as f32).
pub struct ActQ8_0 {
    pub(crate) qs: Vec<i8>,
    pub(crate) d: Vec<f32>,
    pub(crate) blocks: usize,
}

/// quantize_row_q8_0, AVX/AVX2 variant.
pub fn quantize_q8_0(x: &[f32], rows: usize) -> ActQ8_0 {
    let k = x.len() / rows;
    let blocks = k / QK8_0;
    let mut qs = vec![0i8; rows * k];
    let mut d = vec![0f32; rows * blocks];
    for (b, (src, dst)) in x.chunks_exact(QK8_0).zip(qs.chunks_exact_mut(QK8_0)).enumerate() {
        let max = src.iter().fold(0f32, |m, v| m.max(v.abs()));
        let scale = max / 127.0;
        d[b] = f16::from_f32(scale).to_f32();
        let id = if max != 0.0 { 127.0 / max } else { 0.0 };
        for (q, v) in dst.iter_mut().zip(src) {
            *q = (v * id).round_ties_even() as i8;
        }
    }
    ActQ8_0 { qs, d, blocks }
}

/// Activation rows quantized to Q8_K (quantize_row_q8_K_ref).
pub struct ActQ8K {
    pub(crate) qs: Vec<i8>,
    pub(crate) d: Vec<f32>,
    pub(crate) bsums: Vec<i32>,
    pub(crate) blocks: usize,
}

pub fn quantize_q8_k(x: &[f32], rows: usize) -> ActQ8K {
    let k = x.len() / rows;
    let blocks = k / QK_K;
    let mut qs = vec![0i8; rows * k];
    let mut d = vec![0f32; rows * blocks];
    let mut bsums = vec![0i32; rows * blocks * 16];
    for (b, (src, dst)) in x.chunks_exact(QK_K).zip(qs.chunks_exact_mut(QK_K)).enumerate() {
        let mut amax = 0f32;
        let mut max = 0f32;
        for &v in src {
            if v.abs() > amax {
                amax = v.abs();
                max = v;
            }
        }
        if amax == 0.0 {
            continue;
        }
        let iscale = -127.0 / max;
        for (q, v) in dst.iter_mut().zip(src) {
            *q = ((iscale * v).round_ties_even() as i32).min(127) as i8;
        }
        for j in 0..16 {
            bsums[b * 16 + j] = dst[j * 16..(j + 1) * 16].iter().map(|q| *q as i32).sum();
        }
        d[b] = 1.0 / iscale;
    }
    ActQ8K { qs, d, bsums, blocks }
}
