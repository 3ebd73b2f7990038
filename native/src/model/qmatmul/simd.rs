//! The AVX2 forms of the block sums (the scalar ones are in blocks.rs).

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
