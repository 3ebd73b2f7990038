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
mod tests {
    use super::*;
    use crate::model::qmatmul::{self, Kind, QWeight};
    use candle_core::quantized::{GgmlDType, QTensor};
    use candle_core::{Device, Tensor};

    fn sample(n: usize, seed: u32) -> Vec<f32> {
        let mut state = seed;
        (0..n)
            .map(|_| {
                state = state.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                ((state >> 8) as f32 / (1 << 24) as f32 - 0.5) * 4.0
            })
            .collect()
    }

    fn random_i8(n: usize, seed: u32) -> Vec<i8> {
        sample(n, seed).iter().map(|v| (v * 63.0) as i8).collect()
    }

    /// Real blocks from ggml's quantizers (through Candle), so scales and mins are realistic.
    fn blocks(dtype: GgmlDType, rows: usize, k: usize, seed: u32) -> (QTensor, Vec<u8>) {
        let w = Tensor::from_vec(sample(rows * k, seed), (rows, k), &Device::Cpu).unwrap();
        let q = QTensor::quantize(&w, dtype).unwrap();
        let data = q.data().unwrap().into_owned();
        (q, data)
    }

    const TYPES: [(GgmlDType, WeightType); 6] = [
        (GgmlDType::Q4_0, WeightType::Q4_0),
        (GgmlDType::Q5_0, WeightType::Q5_0),
        (GgmlDType::Q8_0, WeightType::Q8_0),
        (GgmlDType::Q4K, WeightType::Q4K),
        (GgmlDType::Q5K, WeightType::Q5K),
        (GgmlDType::Q6K, WeightType::Q6K),
    ];

    #[test]
    fn q8_1_blocks_follow_the_cuda_quantizer() {
        let x = sample(32 * 64, 3);
        for (v, b) in x.chunks_exact(32).zip(quantize(&x)) {
            let amax = v.iter().fold(0f32, |m, a| m.max(a.abs()));
            assert_eq!(b.d, f16::from_f32(amax / 127.0));
            let at = v.iter().position(|a| a.abs() == amax).unwrap();
            assert_eq!(b.qs[at].unsigned_abs(), 127);
            // s is the sum of the unquantized values (in the butterfly's order, close to any order).
            let plain: f64 = v.iter().map(|a| *a as f64).sum();
            assert!((b.s.to_f64() - plain).abs() <= plain.abs() * 1e-3 + 1e-2, "{} vs {plain}", b.s);
        }
        let zero = quantize_block(&[0.0; 32]);
        assert_eq!((zero.qs, zero.d.to_f32(), zero.s.to_f32()), ([0; 32], 0.0, 0.0));
        // Halves round away from zero (roundf), not to even: 63.5 -> 64 with d = 1.
        let mut tie = [0f32; 32];
        tie[0] = 127.0;
        tie[1] = 63.5;
        tie[2] = -2.5;
        let b = quantize_block(&tie);
        assert_eq!(&b.qs[..3], &[127, 64, -3]);
    }

    /// Where q8_1 and ggml's CPU Q8_0 quantizer share their arithmetic (the scale), they agree;
    /// the values differ only where x/d lands on a rounding tie (roundf vs round-half-even of
    /// x * (127/max)), by one.
    #[test]
    fn q8_1_matches_the_cpu_q8_0_quantizer_up_to_ties() {
        let x = sample(32 * 256, 5);
        let cpu = qmatmul::quantize_q8_0(&x, 1);
        let mut off = 0;
        for (i, b) in quantize(&x).iter().enumerate() {
            assert_eq!(b.d.to_f32(), cpu.d[i]);
            for (j, q) in b.qs.iter().enumerate() {
                let diff = (*q as i32 - cpu.qs[32 * i + j] as i32).abs();
                assert!(diff <= 1);
                off += diff as usize;
            }
        }
        assert!(off * 1000 < x.len(), "{off} of {} values off by one", x.len());
    }

    #[test]
    fn the_norm_scale_replays_the_kernel_order_and_is_an_rms_norm() {
        for k in [640usize, 2048, 4096] {
            let x = sample(k, k as u32);
            let w: Vec<f32> = sample(k, 9).iter().map(|v| 1.0 + v * 0.1).collect();
            let (y, q) = rms_norm_q8_1(&x, &w, 1e-6);
            let mut want = vec![0f32; k];
            crate::ggml_math::rms_norm(&x, &w, 1e-6, &mut want);
            for (a, b) in y.iter().zip(&want) {
                assert!((a - b).abs() <= b.abs() * 2e-6 + 1e-7, "{a} vs {b}");
            }
            assert_eq!(q, quantize(&y));
        }
    }

    /// Unit integer sums of Q8_0 / Q4_0 / Q5_0 equal the sums of the eight lanes of ggml's
    /// mul_sum_i8_pairs (qmatmul's block kernels, same weights after the offset).
    #[test]
    fn small_block_integer_sums_equal_the_cpu_kernels() {
        for (dtype, t, kind) in
            [(GgmlDType::Q8_0, WeightType::Q8_0, Kind::Q8_0), (GgmlDType::Q4_0, WeightType::Q4_0, Kind::Q4_0), (GgmlDType::Q5_0, WeightType::Q5_0, Kind::Q5_0)]
        {
            let (_, data) = blocks(dtype, 8, 512, 7);
            let y = random_i8(32, 8);
            let mut w = [0i8; 32];
            for raw in data.chunks_exact(t.block_bytes()) {
                let (lanes, d) = qmatmul::block_lanes(kind, raw, &y, &mut w);
                let u = unpack(t, raw);
                assert_eq!(unit_isum(t, &u, 0, &y), lanes.iter().sum::<i32>(), "{t:?}");
                assert_eq!(u.d, d);
            }
        }
    }

    /// Q4_K: the eight units' integer sums add up to qmatmul's exact superblock sum, with the same
    /// scales and mins.
    #[test]
    fn q4_k_integer_sums_equal_the_cpu_kernel() {
        let (_, data) = blocks(GgmlDType::Q4K, 4, 1024, 11);
        let y = random_i8(256, 12);
        let mut q = [0u8; 256];
        for raw in data.chunks_exact(144) {
            let (mut sc, mut mn) = ([0i32; 8], [0i32; 8]);
            let (d, dmin) = qmatmul::q4k_header(raw, &mut sc, &mut mn);
            let u = unpack(WeightType::Q4K, raw);
            assert_eq!((u.d, u.dmin), (d, dmin));
            assert_eq!(&u.sc[..8], &sc);
            assert_eq!(u.m, mn);
            let units: i32 = (0..8).map(|k| unit_isum(WeightType::Q4K, &u, k, &y[32 * k..])).sum();
            assert_eq!(units, qmatmul::q4k_isum(raw, &mut q, &sc, &y));
        }
    }

    /// Q6_K: the units' sums equal ggml_vec_dot_q6_K_q8_K's lanes minus its -32 correction.
    #[test]
    fn q6_k_integer_sums_equal_the_cpu_kernel() {
        let (_, data) = blocks(GgmlDType::Q6K, 4, 1024, 13);
        let y = random_i8(256, 14);
        let bsums: Vec<i32> = y.chunks_exact(16).map(|c| c.iter().map(|v| *v as i32).sum()).collect();
        let (mut q, mut sc) = ([0u8; 256], [0i32; 16]);
        for raw in data.chunks_exact(210) {
            let (lanes, d) = qmatmul::q6k_lanes(raw, &y, &mut q, &mut sc);
            let correction: i32 = (0..16).map(|g| sc[g] * bsums[g]).sum::<i32>() * 32;
            let u = unpack(WeightType::Q6K, raw);
            assert_eq!(u.d, d);
            let units: i32 = (0..8).map(|k| unit_isum(WeightType::Q6K, &u, k, &y[32 * k..])).sum();
            assert_eq!(units, lanes.iter().sum::<i32>() - correction);
        }
    }

    /// Every type's element-wise reading dequantizes to ggml's values bit for bit (qmatmul's
    /// `rows` for the types it has kernels for, Candle's ggml port for Q5_K).
    #[test]
    fn dequantized_values_equal_ggml() {
        for (dtype, t) in TYPES {
            let (rows, k) = (3, 512);
            let (q, data) = blocks(dtype, rows, k, 17);
            let want: Vec<f32> = if t == WeightType::Q5K {
                q.dequantize(&Device::Cpu).unwrap().flatten_all().unwrap().to_vec1().unwrap()
            } else {
                QWeight::new(q).unwrap().rows(&[0, 1, 2]).unwrap()
            };
            let got: Vec<f32> = data
                .chunks_exact(t.block_bytes())
                .flat_map(|raw| {
                    let u = unpack(t, raw);
                    (0..t.block_values()).map(move |e| dequant(t, &u, e))
                })
                .collect();
            assert_eq!(got, want, "{t:?}");
        }
    }

    /// The reference product (q8_1 activations, the kernels' unit formula) is the same matrix
    /// product as the ggml CPU kernels' up to the activations' 8-bit rounding.
    #[test]
    fn row_dots_agree_with_the_cpu_kernels() {
        let (rows, k) = (16, 1024);
        let x = sample(k, 19);
        let xq = quantize(&x);
        for (dtype, t) in TYPES {
            let (q, data) = blocks(dtype, rows, k, 23);
            let weight = QWeight::new(q).unwrap();
            let want = weight.forward(&x, 1).unwrap();
            let scale = want.iter().fold(0f32, |m, v| m.max(v.abs()));
            let row_bytes = k / t.block_values() * t.block_bytes();
            for (r, w) in want.iter().enumerate() {
                let got = row_dot(t, &data[r * row_bytes..(r + 1) * row_bytes], &xq);
                assert!((got as f32 - w).abs() < scale * 0.02, "{t:?} row {r}: {got} vs {w}");
            }
        }
    }
}
