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
