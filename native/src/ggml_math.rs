//! Scalar replicas of the ggml CPU kernels whose rounding decides greedy ties: the vector expf
//! approximation (`ggml_v_expf`), the f16 table GELU, the f16 dot product's accumulation order,
//! the softmax sums, and the f16 multiply-adds of flash attention. With these the engine's logits
//! follow llama.cpp's to the last bits wherever the matrix multiplications agree.
//!
//! Which arithmetic that is depends on the CPU: llama.cpp's CPU backend ships one build per
//! instruction-set level and loads the best one the CPU runs (node-llama-cpp's prebuilt binaries
//! too). Builds with AVX-512 use 16-lane vectors and `_mm512_reduce_add_ps`; the AVX2 builds
//! (haswell, alderlake) 8-lane vectors, SSE horizontal adds and another `ggml_v_expf`. The
//! quantized dot products are the same in both. [`SimdLevel::current`] picks the level ggml picks.

use half::f16;

/// The vector width of the ggml CPU build whose arithmetic is replicated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SimdLevel {
    /// A build with AVX-512 (skylakex, icelake, zen4, sapphirerapids, ...).
    Avx512,
    /// A build with AVX2 and FMA but no AVX-512 (haswell, alderlake).
    Avx2,
}

impl SimdLevel {
    /// The level of the ggml build llama.cpp loads on this CPU: its variant scores make any CPU with
    /// AVX-512 F, CD, VL, DQ and BW load an AVX-512 build. `RBEE_CANDLE_GGML_SIMD=avx512|avx2`
    /// overrides the detection (to compare with a llama.cpp build of another level).
    ///
    /// Measured on an AMD EPYC (Zen 4) against llama.cpp's zen4 and skylakex builds: the tiny
    /// random models agree token for token at this level (not with the AVX2 replicas), but on
    /// Gemma 3 270M one position in 128 parts with a clear lead (0.85 against 0.15) where the AVX2
    /// replicas agree: some sum in those builds' attention is not ordered as replicated here, and
    /// it is not found yet.
    pub fn current() -> SimdLevel {
        static LEVEL: std::sync::OnceLock<SimdLevel> = std::sync::OnceLock::new();
        *LEVEL.get_or_init(|| match std::env::var("RBEE_CANDLE_GGML_SIMD").as_deref() {
            Ok("avx512") => SimdLevel::Avx512,
            Ok("avx2") => SimdLevel::Avx2,
            _ => SimdLevel::detect(),
        })
    }

    fn detect() -> SimdLevel {
        #[cfg(target_arch = "x86_64")]
        {
            if std::arch::is_x86_feature_detected!("avx512f")
                && std::arch::is_x86_feature_detected!("avx512cd")
                && std::arch::is_x86_feature_detected!("avx512vl")
                && std::arch::is_x86_feature_detected!("avx512dq")
                && std::arch::is_x86_feature_detected!("avx512bw")
            {
                return SimdLevel::Avx512;
            }
        }
        SimdLevel::Avx2
    }

    /// Lanes of one f32 vector.
    pub fn lanes(self) -> usize {
        match self {
            SimdLevel::Avx512 => 16,
            SimdLevel::Avx2 => 8,
        }
    }
}

#[inline]
fn c(bits: u32) -> f32 {
    f32::from_bits(bits)
}

/// ggml_v_expf, one lane, as the build of `level` computes it.
#[inline]
pub fn v_expf_at(level: SimdLevel, x: f32) -> f32 {
    match level {
        SimdLevel::Avx512 => v_expf_avx512(x),
        SimdLevel::Avx2 => v_expf_avx2(x),
    }
}

/// ggml_v_expf at this process's [`SimdLevel`].
#[inline]
pub fn v_expf(x: f32) -> f32 {
    v_expf_at(SimdLevel::current(), x)
}

/// ggml_v_expf (ggml-cpu/vec.h, AVX-512 variant), one lane.
#[inline]
fn v_expf_avx512(x: f32) -> f32 {
    let r = c(0x4b40_0000); // 0x1.8p23
    let z = x.mul_add(c(0x3fb8_aa3b), r);
    let n = z - r;
    let b = (-n).mul_add(c(0x35bf_be8e), (-n).mul_add(c(0x3f31_7200), x));
    if n.abs() > 192.0 {
        return if n <= 0.0 { 0.0 } else { f32::INFINITY };
    }
    let u = b * b;
    let j = c(0x3c07_2010).mul_add(b, c(0x3d2b_9f17)).mul_add(u, c(0x3e2a_af33).mul_add(b, c(0x3eff_fedb))).mul_add(u, c(0x3f7f_fff6).mul_add(b, 1.0));
    // _mm512_scalef_ps(j, n): j * 2^floor(n), rounded once.
    (j as f64 * (n as f64).exp2()) as f32
}

/// ggml_v_expf (ggml-cpu/vec.h, AVX2 variant), one lane: the same reduction and polynomial as
/// the AVX-512 one, but 2^n is built in the exponent bits (`k`) and the polynomial ends with
/// `j*k + k` instead of a final `+1` and `scalef`; |n| > 126 takes a two-factor scaling.
#[inline]
// `!(|n| > 126)` is ggml's test as written: a NaN takes the first branch, as in C.
#[allow(clippy::neg_cmp_op_on_partial_ord)]
fn v_expf_avx2(x: f32) -> f32 {
    let r = c(0x4b40_0000); // 0x1.8p23
    let z = x.mul_add(c(0x3fb8_aa3b), r);
    let n = z - r;
    let b = (-n).mul_add(c(0x35bf_be8e), (-n).mul_add(c(0x3f31_7200), x));
    let e = z.to_bits().wrapping_shl(23);
    let k = f32::from_bits(e.wrapping_add(1.0f32.to_bits()));
    let u = b * b;
    let j = c(0x3c07_2010).mul_add(b, c(0x3d2b_9f17)).mul_add(u, c(0x3e2a_af33).mul_add(b, c(0x3eff_fedb))).mul_add(u, c(0x3f7f_fff6) * b);
    if !(n.abs() > 126.0) {
        return j.mul_add(k, k);
    }
    let g: u32 = if n <= 0.0 { 0x8200_0000 } else { 0 };
    let s1 = f32::from_bits(g.wrapping_add(0x7f00_0000));
    let s2 = f32::from_bits(e.wrapping_sub(g));
    if n.abs() > 192.0 {
        s1 * s1
    } else {
        s2.mul_add(j, s2) * s1
    }
}

/// ggml_v_silu: x / (1 + v_expf(-x)).
#[inline]
pub fn v_silu(x: f32) -> f32 {
    x / (1.0 + v_expf(-x))
}

#[inline]
fn v_silu_at(level: SimdLevel, x: f32) -> f32 {
    x / (1.0 + v_expf_at(level, -x))
}

#[inline]
fn gelu_f32(x: f32) -> f32 {
    const GELU_COEF_A: f32 = 0.044715;
    // sqrt(2/pi): the same f32 as ggml's longer literal.
    const SQRT_2_OVER_PI: f32 = 0.797_884_6;
    // `1.0f + GELU_COEF_A*x*x` is contracted to a fused multiply-add where ggml is built for FMA.
    0.5 * x * (1.0 + (SQRT_2_OVER_PI * x * (GELU_COEF_A * x).mul_add(x, 1.0)).tanh())
}

fn gelu_table() -> &'static [f16] {
    static TABLE: std::sync::OnceLock<Vec<f16>> = std::sync::OnceLock::new();
    TABLE.get_or_init(|| (0..=u16::MAX).map(|bits| f16::from_f32(gelu_f32(f16::from_bits(bits).to_f32()))).collect())
}

/// ggml_vec_geglu_f32 with GGML_GELU_FP16: gelu through the f16 table, times the up projection.
pub fn geglu(gate: &[f32], up: &[f32], out: &mut [f32]) {
    let table = gelu_table();
    for ((o, &x), &g) in out.iter_mut().zip(gate).zip(up) {
        *o = if x <= -10.0 {
            0.0
        } else if x >= 10.0 {
            x * g
        } else {
            table[f16::from_f32(x).to_bits() as usize].to_f32() * g
        };
    }
}

/// ggml_vec_swiglu_f32: v_silu in whole vectors, scalar silu (libm expf) for the tail.
pub fn swiglu(gate: &[f32], up: &[f32], out: &mut [f32]) {
    swiglu_at(SimdLevel::current(), gate, up, out);
}

pub fn swiglu_at(level: SimdLevel, gate: &[f32], up: &[f32], out: &mut [f32]) {
    let n = gate.len();
    let simd = n - n % level.lanes();
    for i in 0..simd {
        out[i] = v_silu_at(level, gate[i]) * up[i];
    }
    for i in simd..n {
        let x = gate[i];
        out[i] = x / (1.0 + (-x).exp()) * up[i];
    }
}

/// ggml_compute_forward_rms_norm_f32 followed by the weight: sum of squares in f64.
pub fn rms_norm(x: &[f32], weight: &[f32], eps: f32, out: &mut [f32]) {
    let mut sum = 0.0f64;
    for &v in x {
        sum += (v * v) as f64;
    }
    let mean = (sum / x.len() as f64) as f32;
    let scale = 1.0 / (mean + eps).sqrt();
    for ((o, &v), &w) in out.iter_mut().zip(x).zip(weight) {
        *o = v * scale * w;
    }
}

/// _mm512_reduce_add_ps over 16 lanes: halves added pairwise down to one.
#[inline]
pub fn reduce16(lanes: &[f32; 16]) -> f32 {
    let mut a = [0f32; 8];
    for i in 0..8 {
        a[i] = lanes[i] + lanes[i + 8];
    }
    let b = [a[0] + a[4], a[1] + a[5], a[2] + a[6], a[3] + a[7]];
    let c = [b[0] + b[2], b[1] + b[3]];
    c[0] + c[1]
}

/// The lanes of one 8-wide vector summed as GGML_F32x8_REDUCE ends: the two 128-bit halves
/// added, then two `_mm_hadd_ps`.
#[inline]
fn reduce8_hadd(lanes: &[f32; 8]) -> f32 {
    let t0 = [lanes[0] + lanes[4], lanes[1] + lanes[5], lanes[2] + lanes[6], lanes[3] + lanes[7]];
    (t0[0] + t0[1]) + (t0[2] + t0[3])
}

/// The lanes of one 8-wide vector summed as ggml's AVX2 softmax does: halves added, then
/// `_mm_movehl_ps` and `_mm_movehdup_ps`.
#[inline]
fn reduce8_movehl(lanes: &[f32; 8]) -> f32 {
    let h = [lanes[4] + lanes[0], lanes[5] + lanes[1], lanes[6] + lanes[2], lanes[7] + lanes[3]];
    (h[0] + h[2]) + (h[1] + h[3])
}

/// ggml_vec_dot_f16 at this process's [`SimdLevel`].
pub fn dot_f16(x: &[f16], y: &[f16]) -> f32 {
    dot_f16_at(SimdLevel::current(), x, y)
}

/// ggml_vec_dot_f16 (GGML_SIMD, f16 loaded as f32): four accumulators of one vector each over
/// steps of four vectors, fused multiply-adds, reduced (0+2, 1+3, 0+1, then the lanes), the tail
/// added in f64.
pub fn dot_f16_at(level: SimdLevel, x: &[f16], y: &[f16]) -> f32 {
    let n = x.len();
    let lanes = level.lanes();
    let step = 4 * lanes;
    let np = n - n % step;
    let mut acc = [[0f32; 16]; 4];
    let mut i = 0;
    while i < np {
        for (j, acc_j) in acc.iter_mut().enumerate() {
            let base = i + j * lanes;
            for (l, lane) in acc_j[..lanes].iter_mut().enumerate() {
                *lane = x[base + l].to_f32().mul_add(y[base + l].to_f32(), *lane);
            }
        }
        i += step;
    }
    let mut sum = 0f64;
    if np > 0 {
        let [acc0, acc1, acc2, acc3] = &mut acc;
        for (lane0, lane2) in acc0[..lanes].iter_mut().zip(&acc2[..lanes]) {
            *lane0 += lane2;
        }
        for (lane1, lane3) in acc1[..lanes].iter_mut().zip(&acc3[..lanes]) {
            *lane1 += lane3;
        }
        for (lane0, lane1) in acc0[..lanes].iter_mut().zip(&acc1[..lanes]) {
            *lane0 += lane1;
        }
        sum = match level {
            SimdLevel::Avx512 => reduce16(&acc[0]),
            SimdLevel::Avx2 => reduce8_hadd(acc[0][..8].try_into().expect("eight lanes")),
        } as f64;
    }
    for k in np..n {
        sum += (x[k].to_f32() * y[k].to_f32()) as f64;
    }
    sum as f32
}

/// ggml_vec_soft_max_f32 at this process's [`SimdLevel`].
pub fn soft_max(x: &mut [f32], max: f32) -> f64 {
    soft_max_at(SimdLevel::current(), x, max)
}

/// ggml_vec_soft_max_f32: y = v_expf(x - max) in whole vectors, each vector's sum reduced as that
/// build reduces it and added in f64; the tail through libm's expf.
pub fn soft_max_at(level: SimdLevel, x: &mut [f32], max: f32) -> f64 {
    let n = x.len();
    let lanes = level.lanes();
    let mut sum = 0f64;
    let mut i = 0;
    while i + lanes <= n {
        let mut vector = [0f32; 16];
        for l in 0..lanes {
            vector[l] = v_expf_at(level, x[i + l] - max);
            x[i + l] = vector[l];
        }
        sum += match level {
            SimdLevel::Avx512 => reduce16(&vector),
            SimdLevel::Avx2 => reduce8_movehl(vector[..8].try_into().expect("eight lanes")),
        } as f64;
        i += lanes;
    }
    while i < n {
        let v = (x[i] - max).exp();
        x[i] = v;
        sum += v as f64;
        i += 1;
    }
    sum
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v_expf_is_close_to_expf() {
        for i in -800..=800 {
            let x = i as f32 * 0.11;
            let (approx, exact) = (v_expf(x), x.exp());
            assert!(((approx - exact) / exact).abs() < 2e-6, "x={x} {approx} vs {exact}");
        }
        assert_eq!(v_expf(f32::NEG_INFINITY), 0.0);
        assert_eq!(v_expf(-1000.0), 0.0);
    }

    #[test]
    fn dot_f16_matches_a_plain_sum() {
        let x: Vec<f16> = (0..259).map(|i| f16::from_f32((i as f32 * 0.37).sin())).collect();
        let y: Vec<f16> = (0..259).map(|i| f16::from_f32((i as f32 * 0.11).cos())).collect();
        let plain: f64 = x.iter().zip(&y).map(|(a, b)| a.to_f64() * b.to_f64()).sum();
        assert!((dot_f16(&x, &y) as f64 - plain).abs() < 1e-4);
    }

    #[test]
    fn geglu_uses_the_f16_table() {
        let mut out = [0f32; 3];
        geglu(&[0.5, -20.0, 20.0], &[2.0, 3.0, 0.5], &mut out);
        assert!((out[0] - 2.0 * 0.345_714).abs() < 1e-3, "{}", out[0]);
        assert_eq!(out[1], 0.0);
        assert_eq!(out[2], 10.0);
    }
}
