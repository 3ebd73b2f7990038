//! Quantized matrix multiplication as llama.cpp computes it on x86 CPUs, so that the logits
//! agree with llama.cpp's to the bit wherever the kernels below apply:
//!
//! - Q8_0 / Q5_0 / Q4_0 weights: activations quantized to Q8_0 as `quantize_row_q8_0` (AVX: scale
//!   127/max, round half to even); per 32-block, eight lanes of 4-product integer sums, each
//!   lane accumulated with a fused multiply-add of the two block scales' product, then
//!   `hsum_float_8` (`ggml_vec_dot_q8_0_q8_0` / `q5_0` for one row, tinyBLAS for more: the same
//!   arithmetic per output).
//! - Q6_K: activations as `quantize_row_q8_K_ref`; per 256-superblock the integer lanes of
//!   `ggml_vec_dot_q6_K_q8_K` (AVX2), with the -32 offset folded in through the block sums.
//! - Q4_K: the repacked 8x8 kernels (`ggml_gemv_q4_K_8x8_q8_K`): one exact integer sum per
//!   superblock and output, accumulated separately for the scales and the mins.
//!
//! - On CPUs with AMX (Sapphire Rapids and later) ggml keeps Q4_0, Q8_0, Q4_K and Q6_K weights in
//!   its AMX buffer (`ggml-cpu/amx/mmq.cpp`): one float accumulator per output, one fused
//!   multiply-add per block of the exact integer block sum (the mins of Q4_K folded in by a
//!   second one). Which formula applies is decided once per process, as ggml decides it.
//!
//! Other tensor types go through Candle's `QMatMul`. The integer parts are exact, so only the
//! order of the float operations has to follow ggml's, which is what the loops below do.

use candle_core::quantized::{GgmlDType, QMatMul, QTensor};
use candle_core::{Device, Module, Tensor};
use half::f16;

use crate::error::{EngineError, EngineResult};

const QK8_0: usize = 32;
const QK_K: usize = 256;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Kind {
    Q8_0,
    Q5_0,
    Q4_0,
    Q6K,
    Q4K,
}

impl Kind {
    fn of(dtype: GgmlDType) -> Option<Self> {
        match dtype {
            GgmlDType::Q8_0 => Some(Kind::Q8_0),
            GgmlDType::Q5_0 => Some(Kind::Q5_0),
            GgmlDType::Q4_0 => Some(Kind::Q4_0),
            GgmlDType::Q6K => Some(Kind::Q6K),
            GgmlDType::Q4K => Some(Kind::Q4K),
            _ => None,
        }
    }

    fn block_bytes(self) -> usize {
        match self {
            Kind::Q8_0 => 34,
            Kind::Q5_0 => 22,
            Kind::Q4_0 => 18,
            Kind::Q6K => 210,
            Kind::Q4K => 144,
        }
    }

    fn block_len(self) -> usize {
        match self {
            Kind::Q8_0 | Kind::Q5_0 | Kind::Q4_0 => QK8_0,
            Kind::Q6K | Kind::Q4K => QK_K,
        }
    }
}

enum Inner {
    Ggml { kind: Kind, data: Vec<u8>, amx: bool },
    Candle(QMatMul),
}

/// AMX-TILE and AMX-INT8 in CPUID leaf 7, and the tile state enabled by the OS (XCR0 bits 17, 18).
#[cfg(all(target_arch = "x86_64", target_os = "linux"))]
fn amx_int8_usable() -> bool {
    use std::arch::x86_64::{__cpuid_count, _xgetbv};
    // SAFETY: CPUID is available on every x86_64 CPU; XGETBV only runs when CPUID says XSAVE is
    // enabled by the OS (OSXSAVE).
    unsafe {
        let leaf7 = __cpuid_count(7, 0);
        let (amx_tile, amx_int8) = (leaf7.edx & (1 << 24) != 0, leaf7.edx & (1 << 25) != 0);
        let osxsave = __cpuid_count(1, 0).ecx & (1 << 27) != 0;
        if !(amx_tile && amx_int8 && osxsave) {
            return false;
        }
        #[target_feature(enable = "xsave")]
        unsafe fn xcr0() -> u64 {
            _xgetbv(0)
        }
        let xcr0 = xcr0();
        xcr0 & (1 << 17) != 0 && xcr0 & (1 << 18) != 0
    }
}

/// Whether llama.cpp on this CPU keeps AMX-capable weights in its AMX buffer: its CPU backend
/// variant with AMX is the one loaded when all of these features are present.
/// `RBEE_CANDLE_GGML_AMX=0|1` overrides the detection.
pub fn ggml_uses_amx() -> bool {
    static AMX: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *AMX.get_or_init(|| {
        if let Ok(value) = std::env::var("RBEE_CANDLE_GGML_AMX") {
            return value == "1";
        }
        #[cfg(all(target_arch = "x86_64", target_os = "linux"))]
        {
            std::arch::is_x86_feature_detected!("avx512f")
                && std::arch::is_x86_feature_detected!("avx512vbmi")
                && std::arch::is_x86_feature_detected!("avx512vnni")
                && std::arch::is_x86_feature_detected!("avx512bf16")
                && amx_int8_usable()
        }
        #[cfg(not(all(target_arch = "x86_64", target_os = "linux")))]
        {
            false
        }
    })
}

/// A weight matrix of shape (out_features, in_features).
pub struct QWeight {
    inner: Inner,
    pub out_features: usize,
    pub in_features: usize,
}

#[inline]
fn f16_at(bytes: &[u8], at: usize) -> f32 {
    f16::from_bits(u16::from_le_bytes([bytes[at], bytes[at + 1]])).to_f32()
}

/// hsum_float_8: (4..8 + 0..4), then (0+2, 1+3), then (0+1).
#[inline]
fn hsum8(v: &[f32; 8]) -> f32 {
    let r = [v[4] + v[0], v[5] + v[1], v[6] + v[2], v[7] + v[3]];
    let s = [r[0] + r[2], r[1] + r[3]];
    s[0] + s[1]
}

/// Activation rows quantized to Q8_0: 32 int8 per block and the block's f16 scale (as f32).
pub struct ActQ8_0 {
    pub(crate) qs: Vec<i8>,
    pub(crate) d: Vec<f32>,
    blocks: usize,
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
    qs: Vec<i8>,
    d: Vec<f32>,
    bsums: Vec<i32>,
    blocks: usize,
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

/// Splits `n` output columns over Candle's thread pool, or runs them here when the matrix is too
/// small for the hand-off to pay (a decode step's layer matmuls on a small model).
fn for_columns(n: usize, work: usize, f: impl Fn(std::ops::Range<usize>) + Sync) {
    static PARALLEL_MIN_WORK: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    let min_work = *PARALLEL_MIN_WORK.get_or_init(|| std::env::var("RBEE_CANDLE_PARALLEL_MIN_WORK").ok().and_then(|v| v.parse().ok()).unwrap_or(8 << 20));
    if work < min_work {
        f(0..n);
    } else {
        candle_core::utils::barrier_pool().execute_chunked(n, f);
    }
}

/// One 32-weight block of a Q8_0-family tensor as int8, and its scale.
#[inline(always)]
fn unpack_q8_family(kind: Kind, raw: &[u8], out: &mut [i8; 32]) -> f32 {
    let d = f16_at(raw, 0);
    match kind {
        Kind::Q8_0 => {
            for (o, b) in out.iter_mut().zip(&raw[2..34]) {
                *o = *b as i8;
            }
        }
        Kind::Q5_0 => {
            let qh = u32::from_le_bytes([raw[2], raw[3], raw[4], raw[5]]);
            let qs = &raw[6..22];
            for j in 0..16 {
                let h0 = (((qh >> j) << 4) & 0x10) as u8;
                let h1 = ((qh >> (j + 12)) & 0x10) as u8;
                out[j] = ((qs[j] & 0x0f) | h0) as i8 - 16;
                out[j + 16] = ((qs[j] >> 4) | h1) as i8 - 16;
            }
        }
        Kind::Q4_0 => {
            let qs = &raw[2..18];
            for j in 0..16 {
                out[j] = (qs[j] & 0x0f) as i8 - 8;
                out[j + 16] = (qs[j] >> 4) as i8 - 8;
            }
        }
        _ => unreachable!(),
    }
    d
}

/// The eight 4-product lanes of one 32-block (`mul_sum_i8_pairs`), with AVX2 where available.
#[inline]
pub(crate) fn block_lanes(kind: Kind, raw: &[u8], x: &[i8], w: &mut [i8; 32]) -> ([i32; 8], f32) {
    #[cfg(target_arch = "x86_64")]
    {
        if simd::available() {
            // SAFETY: AVX2 and FMA were detected; `raw` holds one block and `x` 32 values.
            return unsafe { simd::block_lanes(kind, raw, x) };
        }
    }
    let d = unpack_q8_family(kind, raw, w);
    (lanes_i8(w, x), d)
}

/// ggml_vec_dot_q6_K_q8_K's eight integer lanes before the -32 correction.
#[inline]
pub(crate) fn q6k_lanes(raw: &[u8], x: &[i8], q: &mut [u8; QK_K], sc: &mut [i32; 16]) -> ([i32; 8], f32) {
    #[cfg(target_arch = "x86_64")]
    {
        if simd::available() {
            // SAFETY: AVX2 was detected; `raw` is one Q6_K block and `x` 256 values.
            let lanes = unsafe { simd::q6k_lanes(raw, x) };
            for (s, b) in sc.iter_mut().zip(&raw[192..208]) {
                *s = *b as i8 as i32;
            }
            return (lanes, f16_at(raw, 208));
        }
    }
    let dw = unpack_q6k(raw, q, sc);
    let mut sumi = [0i32; 8];
    for c in 0..8 {
        for l in 0..8 {
            let base = c * 32 + 4 * l;
            let s: i32 = (base..base + 4).map(|e| q[e] as i32 * x[e] as i32).sum();
            sumi[l] += sc[2 * c + l / 4] * s;
        }
    }
    (sumi, dw)
}

/// The exact Q4_K superblock sum of scale * q4 * q8.
#[inline]
pub(crate) fn q4k_isum(raw: &[u8], q: &mut [u8; QK_K], sc: &[i32; 8], x: &[i8]) -> i32 {
    #[cfg(target_arch = "x86_64")]
    {
        if simd::available() {
            // SAFETY: AVX2 was detected; `raw` is one Q4_K block and `x` 256 values.
            return unsafe { simd::q4k_isum(&raw[16..144], sc, x) };
        }
    }
    let _ = q;
    let qs = &raw[16..144];
    let mut isum = 0i32;
    for j in 0..4 {
        let (mut lo, mut hi) = (0i32, 0i32);
        for l in 0..32 {
            lo += (qs[32 * j + l] & 0xf) as i32 * x[64 * j + l] as i32;
            hi += (qs[32 * j + l] >> 4) as i32 * x[64 * j + 32 + l] as i32;
        }
        isum += sc[2 * j] * lo + sc[2 * j + 1] * hi;
    }
    isum
}

/// Q4_K sub-block scales, mins, d and dmin, without unpacking the quants.
#[inline]
pub(crate) fn q4k_header(raw: &[u8], sc: &mut [i32; 8], mn: &mut [i32; 8]) -> (f32, f32) {
    for s in 0..8 {
        let (a, b) = scale_min_k4(s, &raw[4..16]);
        sc[s] = a;
        mn[s] = b;
    }
    (f16_at(raw, 0), f16_at(raw, 2))
}

#[cfg(target_arch = "x86_64")]
mod simd {
    use std::arch::x86_64::*;

    use super::{f16_at, Kind};

    pub fn available() -> bool {
        static AVX2: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
        *AVX2.get_or_init(|| is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") && is_x86_feature_detected!("f16c"))
    }

    /// ggml's bytes_from_nibbles_32: low nibbles then high nibbles.
    #[target_feature(enable = "avx2")]
    unsafe fn nibbles(qs: *const u8) -> __m256i {
        let tmp = _mm_loadu_si128(qs as *const __m128i);
        let both = _mm256_set_m128i(_mm_srli_epi16(tmp, 4), tmp);
        _mm256_and_si256(both, _mm256_set1_epi8(0x0f))
    }

    /// ggml's bytes_from_bits_32: 0xFF where bit i of `x` is set.
    #[target_feature(enable = "avx2")]
    unsafe fn bits(x: u32) -> __m256i {
        let shuf = _mm256_set_epi64x(0x0303030303030303, 0x0202020202020202, 0x0101010101010101, 0);
        let bytes = _mm256_shuffle_epi8(_mm256_set1_epi32(x as i32), shuf);
        let mask = _mm256_set1_epi64x(0x7fbfdfeff7fbfdfe);
        _mm256_cmpeq_epi8(_mm256_or_si256(bytes, mask), _mm256_set1_epi64x(-1))
    }

    /// One block's 32 weights as int8.
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn weights(kind: Kind, raw: *const u8) -> __m256i {
        match kind {
            Kind::Q8_0 => _mm256_loadu_si256(raw.add(2) as *const __m256i),
            Kind::Q4_0 => _mm256_sub_epi8(nibbles(raw.add(2)), _mm256_set1_epi8(8)),
            Kind::Q5_0 => {
                let qh = u32::from_le_bytes([*raw.add(2), *raw.add(3), *raw.add(4), *raw.add(5)]);
                let hi = _mm256_andnot_si256(bits(qh), _mm256_set1_epi8(0xf0u8 as i8));
                _mm256_or_si256(nibbles(raw.add(6)), hi)
            }
            _ => unreachable!(),
        }
    }

    /// mul_sum_i8_pairs: the eight lanes of 4-product sums.
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn lanes(qx: __m256i, x: *const i8) -> __m256i {
        let qy = _mm256_loadu_si256(x as *const __m256i);
        let ax = _mm256_sign_epi8(qx, qx);
        let sy = _mm256_sign_epi8(qy, qx);
        _mm256_madd_epi16(_mm256_maddubs_epi16(ax, sy), _mm256_set1_epi16(1))
    }

    #[inline]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn hsum8(x: __m256) -> f32 {
        let mut r = _mm_add_ps(_mm256_extractf128_ps(x, 1), _mm256_castps256_ps128(x));
        r = _mm_add_ps(r, _mm_movehl_ps(r, r));
        r = _mm_add_ss(r, _mm_movehdup_ps(r));
        _mm_cvtss_f32(r)
    }

    /// ggml_vec_dot_q8_0_q8_0 / q5_0 / q4_0 (AVX2) for one weight row and one activation row.
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn dot_lanes(kind: Kind, weights: &[u8], x: &[i8], xd: &[f32]) -> f32 {
        let bb = match kind {
            Kind::Q8_0 => 34,
            Kind::Q5_0 => 22,
            _ => 18,
        };
        let mut acc = _mm256_setzero_ps();
        for (b, &xdb) in xd.iter().enumerate() {
            let raw = weights.as_ptr().add(b * bb);
            let d = _mm256_set1_ps(f16_at(weights, b * bb) * xdb);
            let q = _mm256_cvtepi32_ps(lanes(weights_of(kind, raw), x.as_ptr().add(b * 32)));
            acc = _mm256_fmadd_ps(d, q, acc);
        }
        hsum8(acc)
    }

    /// `dot_lanes` for one weight row and up to four activation rows: each block's weights are
    /// unpacked once for all of them (a batched step's rows), and each row's accumulator takes
    /// exactly the one-row sequence of operations, so every row gets `dot_lanes`'s bits.
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn dot_lanes_rows(kind: Kind, weights: &[u8], xs: &[&[i8]], xds: &[&[f32]], out: &mut [f32]) {
        let bb = match kind {
            Kind::Q8_0 => 34,
            Kind::Q5_0 => 22,
            _ => 18,
        };
        let rows = xs.len().min(4);
        let mut acc = [_mm256_setzero_ps(); 4];
        for b in 0..xds[0].len() {
            let raw = weights.as_ptr().add(b * bb);
            let w = weights_of(kind, raw);
            let dw = f16_at(weights, b * bb);
            for r in 0..rows {
                let d = _mm256_set1_ps(dw * *xds[r].get_unchecked(b));
                let q = _mm256_cvtepi32_ps(lanes(w, xs[r].as_ptr().add(b * 32)));
                acc[r] = _mm256_fmadd_ps(d, q, acc[r]);
            }
        }
        for r in 0..rows {
            out[r] = hsum8(acc[r]);
        }
    }

    /// The AMX kernels' arithmetic for one weight row and one activation row: one accumulator,
    /// one fused multiply-add per block of the block's exact integer sum.
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn dot_amx(kind: Kind, weights: &[u8], x: &[i8], xd: &[f32]) -> f32 {
        let bb = match kind {
            Kind::Q8_0 => 34,
            Kind::Q5_0 => 22,
            _ => 18,
        };
        let mut acc = 0f32;
        for (b, &xdb) in xd.iter().enumerate() {
            let raw = weights.as_ptr().add(b * bb);
            let l = lanes(weights_of(kind, raw), x.as_ptr().add(b * 32));
            // exact integer sum of the lanes
            let s = _mm_add_epi32(_mm256_extracti128_si256(l, 1), _mm256_castsi256_si128(l));
            let s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0b01_00_11_10));
            let s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0b10_11_00_01));
            let isum = _mm_cvtsi128_si32(s);
            acc = (isum as f32).mul_add(f16_at(weights, b * bb) * xdb, acc);
        }
        acc
    }

    /// Q6_K: ggml_vec_dot_q6_K_q8_K's integer lanes (AVX2) before the -32 correction: lane l
    /// sums scale * q6 * q8 over elements whose index mod 32 falls in 4l..4l+3.
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn q6k_lanes(raw: &[u8], x: &[i8]) -> [i32; 8] {
        let m3 = _mm256_set1_epi8(3);
        let m15 = _mm256_set1_epi8(15);
        let mut q4 = raw.as_ptr();
        let mut qh = raw.as_ptr().add(128);
        let sc = raw.as_ptr().add(192) as *const i8;
        let mut q8 = x.as_ptr();
        let mut sumi = _mm256_setzero_si256();
        for j in 0..2 {
            let q4bits1 = _mm256_loadu_si256(q4 as *const __m256i);
            let q4bits2 = _mm256_loadu_si256(q4.add(32) as *const __m256i);
            let q4bits_h = _mm256_loadu_si256(qh as *const __m256i);
            q4 = q4.add(64);
            qh = qh.add(32);
            let q4h_0 = _mm256_slli_epi16(_mm256_and_si256(q4bits_h, m3), 4);
            let q4h_1 = _mm256_slli_epi16(_mm256_and_si256(q4bits_h, _mm256_set1_epi8(12)), 2);
            let q4h_2 = _mm256_and_si256(q4bits_h, _mm256_set1_epi8(48));
            let q4h_3 = _mm256_srli_epi16(_mm256_and_si256(q4bits_h, _mm256_set1_epi8(-64)), 2);
            let q = [
                _mm256_or_si256(_mm256_and_si256(q4bits1, m15), q4h_0),
                _mm256_or_si256(_mm256_and_si256(q4bits2, m15), q4h_1),
                _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(q4bits1, 4), m15), q4h_2),
                _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(q4bits2, 4), m15), q4h_3),
            ];
            for (c, qc) in q.iter().enumerate() {
                let y = _mm256_loadu_si256(q8 as *const __m256i);
                q8 = q8.add(32);
                let p16 = _mm256_maddubs_epi16(*qc, y);
                let is = 8 * j + 2 * c;
                let (s0, s1) = (*sc.add(is) as i16, *sc.add(is + 1) as i16);
                let scales = _mm256_set_epi16(s1, s1, s1, s1, s1, s1, s1, s1, s0, s0, s0, s0, s0, s0, s0, s0);
                sumi = _mm256_add_epi32(sumi, _mm256_madd_epi16(scales, p16));
            }
        }
        let mut lanes = [0i32; 8];
        _mm256_storeu_si256(lanes.as_mut_ptr() as *mut __m256i, sumi);
        lanes
    }

    /// Q4_K: the exact sum over the superblock of scale * q4 * q8 (mins apart).
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn q4k_isum(qs: &[u8], scales: &[i32; 8], x: &[i8]) -> i32 {
        let m4 = _mm256_set1_epi8(0xf);
        let ones = _mm256_set1_epi16(1);
        let mut sum = _mm256_setzero_si256();
        for j in 0..4 {
            let bits = _mm256_loadu_si256(qs.as_ptr().add(32 * j) as *const __m256i);
            let lo = _mm256_and_si256(bits, m4);
            let hi = _mm256_and_si256(_mm256_srli_epi16(bits, 4), m4);
            let ylo = _mm256_loadu_si256(x.as_ptr().add(64 * j) as *const __m256i);
            let yhi = _mm256_loadu_si256(x.as_ptr().add(64 * j + 32) as *const __m256i);
            let plo = _mm256_madd_epi16(_mm256_maddubs_epi16(lo, ylo), ones);
            let phi = _mm256_madd_epi16(_mm256_maddubs_epi16(hi, yhi), ones);
            sum = _mm256_add_epi32(sum, _mm256_mullo_epi32(plo, _mm256_set1_epi32(scales[2 * j])));
            sum = _mm256_add_epi32(sum, _mm256_mullo_epi32(phi, _mm256_set1_epi32(scales[2 * j + 1])));
        }
        let s = _mm_add_epi32(_mm256_extracti128_si256(sum, 1), _mm256_castsi256_si128(sum));
        let s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0b01_00_11_10));
        let s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0b10_11_00_01));
        _mm_cvtsi128_si32(s)
    }

    /// `dot_amx` for eight consecutive weight rows at once: the eight per-block integer sums are
    /// gathered into one vector, so the eight accumulators advance with one fused multiply-add
    /// (each lane's arithmetic is exactly the one-row version's).
    #[target_feature(enable = "avx2,fma,f16c")]
    pub unsafe fn dot_amx_x8(kind: Kind, rows: [&[u8]; 8], x: &[i8], xd: &[f32]) -> [f32; 8] {
        let bb = match kind {
            Kind::Q8_0 => 34,
            Kind::Q5_0 => 22,
            _ => 18,
        };
        let mut acc = _mm256_setzero_ps();
        for (b, &xdb) in xd.iter().enumerate() {
            let xb = x.as_ptr().add(b * 32);
            let mut v = [_mm256_setzero_si256(); 8];
            let mut d = [0u16; 8];
            for c in 0..8 {
                let raw = rows[c].as_ptr().add(b * bb);
                v[c] = lanes(weights_of(kind, raw), xb);
                d[c] = u16::from_le_bytes([*raw, *raw.add(1)]);
            }
            let h01 = _mm256_hadd_epi32(v[0], v[1]);
            let h23 = _mm256_hadd_epi32(v[2], v[3]);
            let h45 = _mm256_hadd_epi32(v[4], v[5]);
            let h67 = _mm256_hadd_epi32(v[6], v[7]);
            let h0123 = _mm256_hadd_epi32(h01, h23);
            let h4567 = _mm256_hadd_epi32(h45, h67);
            let s0123 = _mm_add_epi32(_mm256_castsi256_si128(h0123), _mm256_extracti128_si256(h0123, 1));
            let s4567 = _mm_add_epi32(_mm256_castsi256_si128(h4567), _mm256_extracti128_si256(h4567, 1));
            let sums = _mm256_cvtepi32_ps(_mm256_set_m128i(s4567, s0123));
            let dw = _mm256_cvtph_ps(_mm_loadu_si128(d.as_ptr() as *const __m128i));
            let scale = _mm256_mul_ps(dw, _mm256_set1_ps(xdb));
            acc = _mm256_fmadd_ps(sums, scale, acc);
        }
        let mut out = [0f32; 8];
        _mm256_storeu_ps(out.as_mut_ptr(), acc);
        out
    }

    #[inline]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn weights_of(kind: Kind, raw: *const u8) -> __m256i {
        weights(kind, raw)
    }

    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn block_lanes(kind: Kind, raw: &[u8], x: &[i8]) -> ([i32; 8], f32) {
        let d = f16_at(raw, 0);
        let qx = match kind {
            Kind::Q8_0 => _mm256_loadu_si256(raw.as_ptr().add(2) as *const __m256i),
            Kind::Q4_0 => _mm256_sub_epi8(nibbles(raw.as_ptr().add(2)), _mm256_set1_epi8(8)),
            Kind::Q5_0 => {
                let qh = u32::from_le_bytes([raw[2], raw[3], raw[4], raw[5]]);
                let hi = _mm256_andnot_si256(bits(qh), _mm256_set1_epi8(0xf0u8 as i8));
                _mm256_or_si256(nibbles(raw.as_ptr().add(6)), hi)
            }
            _ => unreachable!(),
        };
        let qy = _mm256_loadu_si256(x.as_ptr() as *const __m256i);
        // mul_sum_i8_pairs: |x| times y with x's sign, pairs to i16, then pairs to i32.
        let ax = _mm256_sign_epi8(qx, qx);
        let sy = _mm256_sign_epi8(qy, qx);
        let dot = _mm256_madd_epi16(_mm256_maddubs_epi16(ax, sy), _mm256_set1_epi16(1));
        let mut lanes = [0i32; 8];
        _mm256_storeu_si256(lanes.as_mut_ptr() as *mut __m256i, dot);
        (lanes, d)
    }
}

#[inline]
fn lanes_i8(w: &[i8; 32], x: &[i8]) -> [i32; 8] {
    let mut lanes = [0i32; 8];
    for (l, lane) in lanes.iter_mut().enumerate() {
        let mut s = 0i32;
        for e in 4 * l..4 * l + 4 {
            s += w[e] as i32 * x[e] as i32;
        }
        *lane = s;
    }
    lanes
}

/// The Q6_K superblock unpacked: unsigned 6-bit values, the 16 scales, d.
#[inline]
fn unpack_q6k(raw: &[u8], q: &mut [u8; QK_K], scales: &mut [i32; 16]) -> f32 {
    let (ql, qh, sc) = (&raw[0..128], &raw[128..192], &raw[192..208]);
    for half in 0..2 {
        let (ql, qh) = (&ql[half * 64..], &qh[half * 32..]);
        let out = &mut q[half * 128..];
        for l in 0..32 {
            out[l] = (ql[l] & 0xf) | ((qh[l] & 3) << 4);
            out[l + 32] = (ql[l + 32] & 0xf) | (((qh[l] >> 2) & 3) << 4);
            out[l + 64] = (ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4);
            out[l + 96] = (ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4);
        }
    }
    for (s, b) in scales.iter_mut().zip(sc) {
        *s = *b as i8 as i32;
    }
    f16_at(raw, 208)
}

#[inline]
fn scale_min_k4(j: usize, q: &[u8]) -> (i32, i32) {
    if j < 4 {
        ((q[j] & 63) as i32, (q[j + 4] & 63) as i32)
    } else {
        (((q[j + 4] & 0xf) | ((q[j - 4] >> 6) << 4)) as i32, ((q[j + 4] >> 4) | ((q[j] >> 6) << 4)) as i32)
    }
}

/// The Q4_K superblock unpacked: 4-bit values in element order, sub-block scales and mins, d, dmin.
#[inline]
fn unpack_q4k(raw: &[u8], q: &mut [u8; QK_K], scales: &mut [i32; 8], mins: &mut [i32; 8]) -> (f32, f32) {
    let d = f16_at(raw, 0);
    let dmin = f16_at(raw, 2);
    let sc = &raw[4..16];
    let qs = &raw[16..144];
    for j in 0..4 {
        for l in 0..32 {
            q[j * 64 + l] = qs[j * 32 + l] & 0xf;
            q[j * 64 + 32 + l] = qs[j * 32 + l] >> 4;
        }
    }
    for s in 0..8 {
        let (a, b) = scale_min_k4(s, sc);
        scales[s] = a;
        mins[s] = b;
    }
    (d, dmin)
}

impl QWeight {
    pub fn new(tensor: QTensor) -> EngineResult<Self> {
        let rows = tensor.shape().dims().first().copied().unwrap_or(0);
        Self::slice_of(tensor, rows)
    }

    /// A slice of a larger matrix's output rows (a tensor-parallel shard): which kernel runs is
    /// decided by the whole matrix's shape, as ggml decides it for the file, so that every output
    /// is computed exactly as one process computes it.
    pub fn slice_of(tensor: QTensor, full_out_features: usize) -> EngineResult<Self> {
        let dims = tensor.shape().dims().to_vec();
        if dims.len() != 2 {
            return Err(EngineError::invalid_gguf(format!("a weight matrix has shape {dims:?}")));
        }
        let (out_features, in_features) = (dims[0], dims[1]);
        let kind = Kind::of(tensor.dtype()).filter(|k| in_features % k.block_len() == 0 && tensor.device().is_cpu());
        let inner = match kind {
            Some(kind) => {
                let data = tensor.data()?.into_owned();
                if data.len() != out_features * in_features / kind.block_len() * kind.block_bytes() {
                    return Err(EngineError::invalid_gguf(format!("a {kind:?} tensor of {} bytes for shape {dims:?}", data.len())));
                }
                // ggml's AMX buffer takes these types when the output count is a multiple of 32.
                let amx = ggml_uses_amx() && matches!(kind, Kind::Q4_0 | Kind::Q8_0 | Kind::Q4K | Kind::Q6K) && full_out_features.is_multiple_of(32);
                Inner::Ggml { kind, data, amx }
            }
            None => Inner::Candle(QMatMul::from_qtensor(tensor)?),
        };
        Ok(Self { inner, out_features, in_features })
    }

    /// Whether `forward` gives each row the same bits whatever the row count: true for the ggml
    /// kernels here (per output, one fixed order of operations); Candle's may pick another
    /// algorithm for more rows, so a batch multiplies those one stream at a time.
    pub fn row_exact(&self) -> bool {
        matches!(self.inner, Inner::Ggml { .. })
    }

    pub fn storage_bytes(&self) -> usize {
        match &self.inner {
            Inner::Ggml { data, .. } => data.len(),
            Inner::Candle(_) => 0,
        }
    }

    /// Rows of the matrix as f32 (the embedding lookup, `ggml_get_rows`).
    pub fn rows(&self, ids: &[u32]) -> EngineResult<Vec<f32>> {
        let k = self.in_features;
        if let Some(bad) = ids.iter().find(|id| **id as usize >= self.out_features) {
            return Err(EngineError::invalid_request(format!("token {bad} is outside the vocabulary of {}", self.out_features)));
        }
        let (kind, data) = match &self.inner {
            Inner::Ggml { kind, data, .. } => (*kind, data),
            Inner::Candle(weight) => {
                let ids_tensor = Tensor::from_slice(ids, ids.len(), &Device::Cpu)?;
                let rows = match weight {
                    QMatMul::QTensor(t) => t.embedding(&ids_tensor)?,
                    QMatMul::Tensor(t) | QMatMul::TensorF16(t) => t.index_select(&ids_tensor, 0)?.to_dtype(candle_core::DType::F32)?,
                };
                return Ok(rows.flatten_all()?.to_vec1::<f32>()?);
            }
        };
        let row_bytes = k / kind.block_len() * kind.block_bytes();
        let mut out = Vec::with_capacity(ids.len() * k);
        for &id in ids {
            let raw = &data[id as usize * row_bytes..(id as usize + 1) * row_bytes];
            match kind {
                Kind::Q8_0 | Kind::Q5_0 | Kind::Q4_0 => {
                    let mut w = [0i8; 32];
                    for block in raw.chunks_exact(kind.block_bytes()) {
                        let d = unpack_q8_family(kind, block, &mut w);
                        out.extend(w.iter().map(|q| *q as f32 * d));
                    }
                }
                Kind::Q6K => {
                    let (mut q, mut sc) = ([0u8; QK_K], [0i32; 16]);
                    for block in raw.chunks_exact(210) {
                        let d = unpack_q6k(block, &mut q, &mut sc);
                        out.extend(q.iter().enumerate().map(|(i, v)| d * sc[i / 16] as f32 * (*v as i32 - 32) as f32));
                    }
                }
                Kind::Q4K => {
                    let (mut q, mut sc, mut mn) = ([0u8; QK_K], [0i32; 8], [0i32; 8]);
                    for block in raw.chunks_exact(144) {
                        let (d, dmin) = unpack_q4k(block, &mut q, &mut sc, &mut mn);
                        out.extend(q.iter().enumerate().map(|(i, v)| (d * sc[i / 32] as f32) * *v as f32 - dmin * mn[i / 32] as f32));
                    }
                }
            }
        }
        Ok(out)
    }

    /// x: (rows, in_features) row-major; returns (rows, out_features).
    pub fn forward(&self, x: &[f32], rows: usize) -> EngineResult<Vec<f32>> {
        let (n, k) = (self.out_features, self.in_features);
        if x.len() != rows * k {
            return Err(EngineError::internal(format!("matmul of {} values as {rows} rows of {k}", x.len())));
        }
        let (kind, data, amx) = match &self.inner {
            Inner::Candle(weight) => {
                let input = Tensor::from_slice(x, (rows, k), &Device::Cpu)?;
                return Ok(weight.forward(&input)?.flatten_all()?.to_vec1::<f32>()?);
            }
            Inner::Ggml { kind, data, amx } => (*kind, data.as_slice(), *amx),
        };
        let mut out = vec![0f32; rows * n];
        let out_ptr = out.as_mut_ptr() as usize;
        let row_bytes = k / kind.block_len() * kind.block_bytes();
        // SAFETY (for the writes below): output (r, o) is written only by the work item of column o.
        let write = move |r: usize, o: usize, v: f32| unsafe { *(out_ptr as *mut f32).add(r * n + o) = v };
        let work = rows * n * k;
        if amx {
            self.forward_amx(kind, data, x, rows, &write);
            return Ok(out);
        }
        match kind {
            Kind::Q8_0 | Kind::Q5_0 | Kind::Q4_0 => {
                let act = quantize_q8_0(x, rows);
                for_columns(n, work, |cols| {
                    #[cfg(target_arch = "x86_64")]
                    if simd::available() {
                        let xs: Vec<&[i8]> = (0..rows).map(|r| &act.qs[r * k..(r + 1) * k]).collect();
                        let xds: Vec<&[f32]> = (0..rows).map(|r| &act.d[r * act.blocks..(r + 1) * act.blocks]).collect();
                        let mut sums = [0f32; 4];
                        for o in cols {
                            let weights = &data[o * row_bytes..(o + 1) * row_bytes];
                            if rows == 1 {
                                // SAFETY: AVX2 and FMA were detected; the slices hold whole blocks.
                                write(0, o, unsafe { simd::dot_lanes(kind, weights, xs[0], xds[0]) });
                                continue;
                            }
                            for first in (0..rows).step_by(4) {
                                let last = (first + 4).min(rows);
                                // SAFETY: as above; at most four rows per call.
                                unsafe { simd::dot_lanes_rows(kind, weights, &xs[first..last], &xds[first..last], &mut sums) };
                                for r in first..last {
                                    write(r, o, sums[r - first]);
                                }
                            }
                        }
                        return;
                    }
                    let mut w = [0i8; 32];
                    let mut acc = vec![[0f32; 8]; rows];
                    for o in cols {
                        let weights = &data[o * row_bytes..(o + 1) * row_bytes];
                        acc.iter_mut().for_each(|a| *a = [0f32; 8]);
                        for b in 0..act.blocks {
                            let raw = &weights[b * kind.block_bytes()..(b + 1) * kind.block_bytes()];
                            for (r, a) in acc.iter_mut().enumerate() {
                                let x = &act.qs[r * k + b * QK8_0..r * k + (b + 1) * QK8_0];
                                let (lanes, dw) = block_lanes(kind, raw, x, &mut w);
                                let d = dw * act.d[r * act.blocks + b];
                                for l in 0..8 {
                                    a[l] = d.mul_add(lanes[l] as f32, a[l]);
                                }
                            }
                        }
                        for (r, a) in acc.iter().enumerate() {
                            write(r, o, hsum8(a));
                        }
                    }
                });
            }
            Kind::Q6K => {
                let act = quantize_q8_k(x, rows);
                for_columns(n, work, |cols| {
                    let mut q = [0u8; QK_K];
                    let mut sc = [0i32; 16];
                    let mut acc = vec![[0f32; 8]; rows];
                    for o in cols {
                        let weights = &data[o * row_bytes..(o + 1) * row_bytes];
                        acc.iter_mut().for_each(|a| *a = [0f32; 8]);
                        for b in 0..act.blocks {
                            let raw = &weights[b * 210..(b + 1) * 210];
                            for (r, a) in acc.iter_mut().enumerate() {
                                let x = &act.qs[r * k + b * QK_K..r * k + (b + 1) * QK_K];
                                let bs = &act.bsums[(r * act.blocks + b) * 16..(r * act.blocks + b + 1) * 16];
                                let (sumi, dw) = q6k_lanes(raw, x, &mut q, &mut sc);
                                let d = act.d[r * act.blocks + b] * dw;
                                for l in 0..8 {
                                    let sub = (bs[2 * l] * sc[2 * l] + bs[2 * l + 1] * sc[2 * l + 1]) << 5;
                                    a[l] = d.mul_add((sumi[l] - sub) as f32, a[l]);
                                }
                            }
                        }
                        for (r, a) in acc.iter().enumerate() {
                            write(r, o, hsum8(a));
                        }
                    }
                });
            }
            Kind::Q4K => {
                let act = quantize_q8_k(x, rows);
                for_columns(n, work, |cols| {
                    let mut q = [0u8; QK_K];
                    let mut sc = [0i32; 8];
                    let mut mn = [0i32; 8];
                    let mut acc = vec![(0f32, 0f32); rows];
                    for o in cols {
                        let weights = &data[o * row_bytes..(o + 1) * row_bytes];
                        acc.iter_mut().for_each(|a| *a = (0.0, 0.0));
                        for b in 0..act.blocks {
                            let raw = &weights[b * 144..(b + 1) * 144];
                            let (dw, dmin) = q4k_header(raw, &mut sc, &mut mn);
                            for (r, a) in acc.iter_mut().enumerate() {
                                let x = &act.qs[r * k + b * QK_K..r * k + (b + 1) * QK_K];
                                let bs = &act.bsums[(r * act.blocks + b) * 16..(r * act.blocks + b + 1) * 16];
                                let isum = q4k_isum(raw, &mut q, &sc, x);
                                let imin: i32 = (0..8).map(|s| mn[s] * (bs[2 * s] + bs[2 * s + 1])).sum();
                                let dy = act.d[r * act.blocks + b];
                                a.0 = (isum as f32).mul_add(dw * dy, a.0);
                                a.1 = (imin as f32).mul_add(dmin * dy, a.1);
                            }
                        }
                        for (r, a) in acc.iter().enumerate() {
                            write(r, o, a.0 - a.1);
                        }
                    }
                });
            }
        }
        Ok(out)
    }
}

impl QWeight {
    /// ggml's AMX kernels (tinygemm VNNI for one row, AMX tiles for more: the same arithmetic
    /// per output): a single accumulator, one fused multiply-add per block.
    fn forward_amx(&self, kind: Kind, data: &[u8], x: &[f32], rows: usize, write: &(dyn Fn(usize, usize, f32) + Sync)) {
        let (n, k) = (self.out_features, self.in_features);
        let row_bytes = k / kind.block_len() * kind.block_bytes();
        let work = rows * n * k;
        match kind {
            Kind::Q8_0 | Kind::Q4_0 | Kind::Q5_0 => {
                let act = quantize_q8_0(x, rows);
                for_columns(n, work, |cols| {
                    #[cfg(target_arch = "x86_64")]
                    if simd::available() {
                        let mut o = cols.start;
                        while o < cols.end {
                            if o % 8 == 0 && o + 8 <= cols.end {
                                let group: [&[u8]; 8] = std::array::from_fn(|c| &data[(o + c) * row_bytes..(o + c + 1) * row_bytes]);
                                for r in 0..rows {
                                    let x = &act.qs[r * k..(r + 1) * k];
                                    let xd = &act.d[r * act.blocks..(r + 1) * act.blocks];
                                    // SAFETY: AVX2, FMA and F16C were detected; the slices hold whole blocks.
                                    let sums = unsafe { simd::dot_amx_x8(kind, group, x, xd) };
                                    for (c, v) in sums.iter().enumerate() {
                                        write(r, o + c, *v);
                                    }
                                }
                                o += 8;
                                continue;
                            }
                            let weights = &data[o * row_bytes..(o + 1) * row_bytes];
                            for r in 0..rows {
                                let x = &act.qs[r * k..(r + 1) * k];
                                let xd = &act.d[r * act.blocks..(r + 1) * act.blocks];
                                // SAFETY: AVX2 and FMA were detected; the slices hold whole blocks.
                                write(r, o, unsafe { simd::dot_amx(kind, weights, x, xd) });
                            }
                            o += 1;
                        }
                        return;
                    }
                    let mut w = [0i8; 32];
                    let mut acc = vec![0f32; rows];
                    for o in cols {
                        let weights = &data[o * row_bytes..(o + 1) * row_bytes];
                        acc.iter_mut().for_each(|a| *a = 0.0);
                        for b in 0..act.blocks {
                            let raw = &weights[b * kind.block_bytes()..(b + 1) * kind.block_bytes()];
                            for (r, a) in acc.iter_mut().enumerate() {
                                let xq = &act.qs[r * k + b * QK8_0..r * k + (b + 1) * QK8_0];
                                let (lanes, dw) = block_lanes(kind, raw, xq, &mut w);
                                let isum: i32 = lanes.iter().sum();
                                *a = (isum as f32).mul_add(dw * act.d[r * act.blocks + b], *a);
                            }
                        }
                        for (r, a) in acc.iter().enumerate() {
                            write(r, o, *a);
                        }
                    }
                });
            }
            Kind::Q6K => {
                let act = quantize_q8_k(x, rows);
                for_columns(n, work, |cols| {
                    let mut q = [0u8; QK_K];
                    let mut sc = [0i32; 16];
                    let mut acc = vec![0f32; rows];
                    for o in cols {
                        let weights = &data[o * row_bytes..(o + 1) * row_bytes];
                        acc.iter_mut().for_each(|a| *a = 0.0);
                        for b in 0..act.blocks {
                            let raw = &weights[b * 210..(b + 1) * 210];
                            for (r, a) in acc.iter_mut().enumerate() {
                                let xq = &act.qs[r * k + b * QK_K..r * k + (b + 1) * QK_K];
                                let bs = &act.bsums[(r * act.blocks + b) * 16..(r * act.blocks + b + 1) * 16];
                                let (lanes, dw) = q6k_lanes(raw, xq, &mut q, &mut sc);
                                let correction: i32 = (0..16).map(|g| sc[g] * bs[g]).sum::<i32>() * 32;
                                let isum = lanes.iter().sum::<i32>() - correction;
                                *a = (isum as f32).mul_add(dw * act.d[r * act.blocks + b], *a);
                            }
                        }
                        for (r, a) in acc.iter().enumerate() {
                            write(r, o, *a);
                        }
                    }
                });
            }
            Kind::Q4K => {
                let act = quantize_q8_k(x, rows);
                for_columns(n, work, |cols| {
                    let mut q = [0u8; QK_K];
                    let mut sc = [0i32; 8];
                    let mut mn = [0i32; 8];
                    let mut acc = vec![0f32; rows];
                    for o in cols {
                        let weights = &data[o * row_bytes..(o + 1) * row_bytes];
                        acc.iter_mut().for_each(|a| *a = 0.0);
                        for b in 0..act.blocks {
                            let raw = &weights[b * 144..(b + 1) * 144];
                            let (dw, dmin) = q4k_header(raw, &mut sc, &mut mn);
                            for (r, a) in acc.iter_mut().enumerate() {
                                let xq = &act.qs[r * k + b * QK_K..r * k + (b + 1) * QK_K];
                                let bs = &act.bsums[(r * act.blocks + b) * 16..(r * act.blocks + b + 1) * 16];
                                let isum = q4k_isum(raw, &mut q, &sc, xq);
                                let imin: i32 = (0..8).map(|s| mn[s] * (bs[2 * s] + bs[2 * s + 1])).sum();
                                let dy = act.d[r * act.blocks + b];
                                *a = (isum as f32).mul_add(dw * dy, *a);
                                *a = (-(imin as f32)).mul_add(dmin * dy, *a);
                            }
                        }
                        for (r, a) in acc.iter().enumerate() {
                            write(r, o, *a);
                        }
                    }
                });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(n: usize, seed: u32) -> Vec<f32> {
        let mut state = seed;
        (0..n)
            .map(|_| {
                state = state.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                ((state >> 8) as f32 / (1 << 24) as f32 - 0.5) * 4.0
            })
            .collect()
    }

    /// Each kernel agrees with Candle's dequantized reference within quantization noise.
    #[test]
    fn kernels_agree_with_candle() {
        let (rows, k, n) = (3, 512, 24);
        let x = sample(rows * k, 1);
        let w = sample(n * k, 2);
        let w_tensor = Tensor::from_vec(w, (n, k), &Device::Cpu).unwrap();
        let x_tensor = Tensor::from_vec(x.clone(), (rows, k), &Device::Cpu).unwrap();
        for dtype in [GgmlDType::Q8_0, GgmlDType::Q5_0, GgmlDType::Q4_0, GgmlDType::Q6K, GgmlDType::Q4K] {
            let q = QTensor::quantize(&w_tensor, dtype).unwrap();
            let reference = q.dequantize(&Device::Cpu).unwrap();
            let expected = x_tensor.matmul(&reference.t().unwrap()).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap();
            let weight = QWeight::new(q).unwrap();
            assert!(matches!(weight.inner, Inner::Ggml { .. }), "{dtype:?} takes the ggml kernel");
            let got = weight.forward(&x, rows).unwrap();
            let scale = expected.iter().fold(0f32, |m, v| m.max(v.abs()));
            for (i, (a, b)) in got.iter().zip(&expected).enumerate() {
                assert!((a - b).abs() < scale * 0.02, "{dtype:?} output {i}: {a} vs {b}");
            }
        }
    }

    /// A batched step multiplies all its rows at once: each row must get the bits it gets alone,
    /// whatever the row count (the multi-row kernels, the thread split of larger products).
    #[test]
    fn every_row_gets_its_bits_alone_whatever_the_row_count() {
        let (k, n) = (512, 40);
        let w = sample(n * k, 3);
        let w_tensor = Tensor::from_vec(w, (n, k), &Device::Cpu).unwrap();
        for dtype in [GgmlDType::Q8_0, GgmlDType::Q5_0, GgmlDType::Q4_0, GgmlDType::Q6K, GgmlDType::Q4K] {
            let weight = QWeight::new(QTensor::quantize(&w_tensor, dtype).unwrap()).unwrap();
            assert!(weight.row_exact());
            for rows in [2, 3, 4, 5, 9] {
                let x = sample(rows * k, 7 + rows as u32);
                let together = weight.forward(&x, rows).unwrap();
                for r in 0..rows {
                    let alone = weight.forward(&x[r * k..(r + 1) * k], 1).unwrap();
                    let same = alone.iter().zip(&together[r * n..(r + 1) * n]).all(|(a, b)| a.to_bits() == b.to_bits());
                    assert!(same, "{dtype:?}: row {r} of {rows} differs from the row alone");
                }
            }
        }
    }

    #[test]
    fn q8_0_quantization_rounds_half_to_even() {
        let mut x = vec![0f32; 32];
        x[0] = 127.0;
        x[1] = 2.5;
        x[2] = -3.5;
        let act = quantize_q8_0(&x, 1);
        assert_eq!(act.d[0], 1.0);
        assert_eq!(&act.qs[..3], &[127, 2, -4]);
    }
}
