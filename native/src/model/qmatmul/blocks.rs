//! One quantized block at a time: unpacking and the exact integer sums ggml's kernels form.

use super::activations::f16_at;
use super::{Kind, QK_K};

/// Splits `n` output columns over Candle's thread pool, or runs them here when the matrix is too
/// small for the hand-off to pay (a decode step's layer matmuls on a small model).
pub(crate) fn for_columns(n: usize, work: usize, f: impl Fn(std::ops::Range<usize>) + Sync) {
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
pub(crate) fn unpack_q8_family(kind: Kind, raw: &[u8], out: &mut [i8; 32]) -> f32 {
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
        if super::simd::available() {
            // SAFETY: AVX2 and FMA were detected; `raw` holds one block and `x` 32 values.
            return unsafe { super::simd::block_lanes(kind, raw, x) };
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
        if super::simd::available() {
            // SAFETY: AVX2 was detected; `raw` is one Q6_K block and `x` 256 values.
            let lanes = unsafe { super::simd::q6k_lanes(raw, x) };
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
        if super::simd::available() {
            // SAFETY: AVX2 was detected; `raw` is one Q4_K block and `x` 256 values.
            return unsafe { super::simd::q4k_isum(&raw[16..144], sc, x) };
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

#[inline]
pub(crate) fn lanes_i8(w: &[i8; 32], x: &[i8]) -> [i32; 8] {
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
pub(crate) fn unpack_q6k(raw: &[u8], q: &mut [u8; QK_K], scales: &mut [i32; 16]) -> f32 {
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
pub(crate) fn scale_min_k4(j: usize, q: &[u8]) -> (i32, i32) {
    if j < 4 {
        ((q[j] & 63) as i32, (q[j + 4] & 63) as i32)
    } else {
        (((q[j + 4] & 0xf) | ((q[j - 4] >> 6) << 4)) as i32, ((q[j + 4] >> 4) | ((q[j] >> 6) << 4)) as i32)
    }
}

/// The Q4_K superblock unpacked: 4-bit values in element order, sub-block scales and mins, d, dmin.
#[inline]
pub(crate) fn unpack_q4k(raw: &[u8], q: &mut [u8; QK_K], scales: &mut [i32; 8], mins: &mut [i32; 8]) -> (f32, f32) {
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
