//! CPU references for the CUDA decode kernels (`native/kernels`): the block formats and the
//! arithmetic they fix, so that a kernel has an exact counterpart to be checked against (the GPU
//! harness, `bench/gpu/kernels`, carries a C++ copy of the same definitions).
//!
//! - Activations are ggml's q8_1 blocks as its CUDA `quantize_q8_1` makes them: d = amax / 127,
//!   q = round(x / d) (half away from zero), s = the sum of the 32 unquantized values in the order
//!   of a warp's xor butterfly; d and s stored as f16.
//! - RMSNorm before the quantization sums the squares in the kernel's order (1024 threads, then a
//!   butterfly per warp, then one over the warp sums) and divides by an IEEE square root.
//! - A weight row is read in units of 32 values, one per q8_1 block. Each unit's integer sum is
//!   exact; its value is `d * d8 * isum` (Q4_0, Q5_0, Q8_0, Q6_K) or `d * d8 * isum - dmin * min *
//!   s8` (Q4_K, Q5_K), with the format's offsets (-8, -16, -32) taken on the weights.
//!
//! The tests pin these to the ggml-exact CPU kernels in `qmatmul` where the arithmetic is the same
//! (the integer sums, the block scales, the dequantized weights).

use half::f16;

pub const QK: usize = 32;

/// One q8_1 block of activations.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BlockQ8_1 {
    pub qs: [i8; QK],
    pub d: f16,
    pub s: f16,
}

/// The weight types the CUDA kernels read, by ggml type id.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WeightType {
    Q4_0 = 2,
    Q5_0 = 6,
    Q8_0 = 8,
    Q4K = 12,
    Q5K = 13,
    Q6K = 14,
}

impl WeightType {
    pub fn block_bytes(self) -> usize {
        match self {
            WeightType::Q4_0 => 18,
            WeightType::Q5_0 => 22,
            WeightType::Q8_0 => 34,
            WeightType::Q4K => 144,
            WeightType::Q5K => 176,
            WeightType::Q6K => 210,
        }
    }

    pub fn block_values(self) -> usize {
        match self {
            WeightType::Q4K | WeightType::Q5K | WeightType::Q6K => 256,
            _ => 32,
        }
    }

    pub fn is_k_quant_with_mins(self) -> bool {
        matches!(self, WeightType::Q4K | WeightType::Q5K)
    }
}

/// The value every lane holds after `v += shfl_xor(v, o)` for o = 16, 8, 4, 2, 1 (lanes past
/// `v.len()` hold 0). Float addition commutes, so every lane ends with this one value.
pub fn butterfly_sum(v: &[f32]) -> f32 {
    let mut lanes = [0f32; 32];
    lanes[..v.len()].copy_from_slice(v);
    let mut o = 16;
    while o > 0 {
        let prev = lanes;
        for (i, lane) in lanes.iter_mut().enumerate() {
            *lane = prev[i] + prev[i ^ o];
        }
        o >>= 1;
    }
    lanes[0]
}

/// ggml's CUDA quantize_q8_1 of one block.
pub fn quantize_block(x: &[f32]) -> BlockQ8_1 {
    let amax = x.iter().fold(0f32, |m, v| m.max(v.abs()));
    let sum = butterfly_sum(x);
    let d = amax / 127.0;
    let mut qs = [0i8; QK];
    for (q, v) in qs.iter_mut().zip(x) {
        *q = if amax == 0.0 { 0 } else { (v / d).round() as i8 };
    }
    BlockQ8_1 { qs, d: f16::from_f32(d), s: f16::from_f32(sum) }
}

pub fn quantize(x: &[f32]) -> Vec<BlockQ8_1> {
    x.chunks_exact(QK).map(quantize_block).collect()
}

/// The RMSNorm scale as `rbee_rmsnorm_q8_1` computes it (its reduction order replayed).
pub fn norm_scale(x: &[f32], eps: f32) -> f32 {
    let mut part = [0f32; 1024];
    for (t, p) in part.iter_mut().enumerate() {
        let mut acc = 0f32;
        for v in x.iter().skip(t).step_by(1024) {
            acc = v.mul_add(*v, acc);
        }
        *p = acc;
    }
    let warps: Vec<f32> = part.chunks_exact(32).map(butterfly_sum).collect();
    let ss = butterfly_sum(&warps);
    1.0 / (ss / x.len() as f32 + eps).sqrt()
}

/// `rbee_rmsnorm_q8_1` for one row: (x * scale) * w, and its q8_1 blocks.
pub fn rms_norm_q8_1(x: &[f32], w: &[f32], eps: f32) -> (Vec<f32>, Vec<BlockQ8_1>) {
    let scale = norm_scale(x, eps);
    let y: Vec<f32> = x.iter().zip(w).map(|(v, w)| (v * scale) * w).collect();
    let q = quantize(&y);
    (y, q)
}

/// One weight block's integer values (offset applied) and scales.
pub struct Unpacked {
    pub q: [i32; 256],
    /// Q4_K / Q5_K: the 8 sub-block scales; Q6_K: the 16 group scales.
    pub sc: [i32; 16],
    /// Q4_K / Q5_K: the 8 sub-block mins.
    pub m: [i32; 8],
    pub d: f32,
    pub dmin: f32,
}

fn f16_at(b: &[u8], at: usize) -> f32 {
    f16::from_bits(u16::from_le_bytes([b[at], b[at + 1]])).to_f32()
}

fn scale_min_k4(j: usize, s: &[u8]) -> (i32, i32) {
    if j < 4 {
        ((s[j] & 63) as i32, (s[j + 4] & 63) as i32)
    } else {
        (((s[j + 4] & 0xF) | ((s[j - 4] >> 6) << 4)) as i32, ((s[j + 4] >> 4) | ((s[j] >> 6) << 4)) as i32)
    }
}

/// Reads one block element by element (the layouts of ggml's block_q4_0 ... block_q6_K).
pub fn unpack(t: WeightType, b: &[u8]) -> Unpacked {
    let mut u = Unpacked { q: [0; 256], sc: [0; 16], m: [0; 8], d: 0.0, dmin: 0.0 };
    let nib = |byte: u8, high: bool| if high { (byte >> 4) as i32 } else { (byte & 15) as i32 };
    match t {
        WeightType::Q4_0 => {
            u.d = f16_at(b, 0);
            for e in 0..32 {
                u.q[e] = nib(b[2 + e % 16], e >= 16) - 8;
            }
        }
        WeightType::Q5_0 => {
            u.d = f16_at(b, 0);
            let qh = u32::from_le_bytes([b[2], b[3], b[4], b[5]]);
            for e in 0..32 {
                u.q[e] = (nib(b[6 + e % 16], e >= 16) | (((qh >> e) & 1) << 4) as i32) - 16;
            }
        }
        WeightType::Q8_0 => {
            u.d = f16_at(b, 0);
            for e in 0..32 {
                u.q[e] = b[2 + e] as i8 as i32;
            }
        }
        WeightType::Q4K | WeightType::Q5K => {
            let five = t == WeightType::Q5K;
            u.d = f16_at(b, 0);
            u.dmin = f16_at(b, 2);
            for s in 0..8 {
                (u.sc[s], u.m[s]) = scale_min_k4(s, &b[4..16]);
            }
            let qs = if five { &b[48..176] } else { &b[16..144] };
            for e in 0..256 {
                let (s, l) = (e / 32, e % 32);
                let mut q = nib(qs[32 * (s / 2) + l], s % 2 == 1);
                if five && (b[16 + l] >> s) & 1 == 1 {
                    q += 16;
                }
                u.q[e] = q;
            }
        }
        WeightType::Q6K => {
            u.d = f16_at(b, 208);
            for g in 0..16 {
                u.sc[g] = b[192 + g] as i8 as i32;
            }
            for e in 0..256 {
                let (h, r) = (e / 128, e % 128);
                let (c, l) = (r / 32, r % 32);
                let lo = nib(b[64 * h + 32 * (c % 2) + l], c >= 2);
                let hi = ((b[128 + 32 * h + l] >> (2 * c)) & 3) as i32;
                u.q[e] = (lo | (hi << 4)) - 32;
            }
        }
    }
    u
}

/// The exact integer sum of unit `unit` (values 32*unit..32*unit+32 of the block) with `y`.
pub fn unit_isum(t: WeightType, u: &Unpacked, unit: usize, y: &[i8]) -> i32 {
    let mut s = 0i32;
    for (e, &yv) in y.iter().enumerate().take(QK) {
        let i = QK * unit + e;
        let w = if t == WeightType::Q6K { u.q[i] * u.sc[i / 16] } else { u.q[i] };
        s += w * yv as i32;
    }
    if t.is_k_quant_with_mins() {
        s *= u.sc[unit];
    }
    s
}

/// The unit's value as the kernels define it, in f64.
pub fn unit_value(t: WeightType, u: &Unpacked, unit: usize, isum: i32, x: &BlockQ8_1) -> f64 {
    let d8 = x.d.to_f64();
    let main = u.d as f64 * d8 * isum as f64;
    if t.is_k_quant_with_mins() {
        main - u.dmin as f64 * u.m[unit] as f64 * x.s.to_f64()
    } else {
        main
    }
}

/// Dequantized value `e` of a block, with the kernels' (and ggml's) float operations.
pub fn dequant(t: WeightType, u: &Unpacked, e: usize) -> f32 {
    match t {
        WeightType::Q4K | WeightType::Q5K => {
            let s = e / 32;
            let (d1, m1) = (u.d * u.sc[s] as f32, u.dmin * u.m[s] as f32);
            d1 * u.q[e] as f32 - m1
        }
        WeightType::Q6K => (u.d * u.sc[e / 16] as f32) * u.q[e] as f32,
        _ => u.d * u.q[e] as f32,
    }
}

/// One row of weights (ggml blocks, `k` values) times one row of q8_1 activations.
pub fn row_dot(t: WeightType, row: &[u8], x: &[BlockQ8_1]) -> f64 {
    let units = t.block_values() / QK;
    let mut acc = 0f64;
    for (b, raw) in row.chunks_exact(t.block_bytes()).enumerate() {
        let u = unpack(t, raw);
        for k in 0..units {
            let xb = &x[b * units + k];
            acc += unit_value(t, &u, k, unit_isum(t, &u, k, &xb.qs), xb);
        }
    }
    acc
}

#[cfg(test)]
mod tests;
