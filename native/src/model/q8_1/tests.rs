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
