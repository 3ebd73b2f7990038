//! Scalar replicas of the ggml CPU kernels whose rounding decides greedy ties: the vector expf
//! approximation (`ggml_v_expf`), the f16 table GELU, the f16 dot product's accumulation order
//! (AVX-512: four 16-lane accumulators, tree reduction), and the f16 multiply-adds of flash
//! attention. With these the engine's logits follow llama.cpp's to the last bits wherever the
//! matrix multiplications agree.

use half::f16;

#[inline]
fn c(bits: u32) -> f32 {
    f32::from_bits(bits)
}

/// ggml_v_expf (ggml-cpu/vec.h, AVX-512 variant), one lane.
#[inline]
pub fn v_expf(x: f32) -> f32 {
    let r = c(0x4b40_0000); // 0x1.8p23
    let z = x.mul_add(c(0x3fb8_aa3b), r);
    let n = z - r;
    let b = (-n).mul_add(c(0x35bf_be8e), (-n).mul_add(c(0x3f31_7200), x));
    if n.abs() > 192.0 {
        return if n <= 0.0 { 0.0 } else { f32::INFINITY };
    }
    let u = b * b;
    let j = c(0x3c07_2010)
        .mul_add(b, c(0x3d2b_9f17))
        .mul_add(u, c(0x3e2a_af33).mul_add(b, c(0x3eff_fedb)))
        .mul_add(u, c(0x3f7f_fff6).mul_add(b, 1.0));
    // _mm512_scalef_ps(j, n): j * 2^floor(n), rounded once.
    (j as f64 * (n as f64).exp2()) as f32
}

/// ggml_v_silu: x / (1 + v_expf(-x)).
#[inline]
pub fn v_silu(x: f32) -> f32 {
    x / (1.0 + v_expf(-x))
}

#[inline]
fn gelu_f32(x: f32) -> f32 {
    const GELU_COEF_A: f32 = 0.044715;
    const SQRT_2_OVER_PI: f32 = 0.797_884_560_802_865_4;
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

/// ggml_vec_swiglu_f32: 16-lane v_silu, scalar silu for the tail.
pub fn swiglu(gate: &[f32], up: &[f32], out: &mut [f32]) {
    let n = gate.len();
    let simd = n & !15;
    for i in 0..simd {
        out[i] = v_silu(gate[i]) * up[i];
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

/// ggml_vec_dot_f16 (AVX-512): four 16-lane fused accumulators over steps of 64, reduced
/// (0+2, 1+3, 0+1, then the lanes), the tail added in f64.
pub fn dot_f16(x: &[f16], y: &[f16]) -> f32 {
    let n = x.len();
    let np = n & !63;
    let mut acc = [[0f32; 16]; 4];
    let mut i = 0;
    while i < np {
        for (j, lanes) in acc.iter_mut().enumerate() {
            let base = i + j * 16;
            for l in 0..16 {
                lanes[l] = x[base + l].to_f32().mul_add(y[base + l].to_f32(), lanes[l]);
            }
        }
        i += 64;
    }
    let mut sum = 0f64;
    if np > 0 {
        for l in 0..16 {
            acc[0][l] += acc[2][l];
            acc[1][l] += acc[3][l];
        }
        for l in 0..16 {
            acc[0][l] += acc[1][l];
        }
        sum = reduce16(&acc[0]) as f64;
    }
    for k in np..n {
        sum += (x[k].to_f32() * y[k].to_f32()) as f64;
    }
    sum as f32
}

/// ggml_vec_soft_max_f32 (AVX-512): y = v_expf(x - max), the sum in f64 of 16-lane reductions.
pub fn soft_max(x: &mut [f32], max: f32) -> f64 {
    let n = x.len();
    let mut sum = 0f64;
    let mut i = 0;
    while i + 16 <= n {
        let mut lanes = [0f32; 16];
        for l in 0..16 {
            lanes[l] = v_expf(x[i + l] - max);
            x[i + l] = lanes[l];
        }
        sum += reduce16(&lanes) as f64;
        i += 16;
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
