//! ggml's AMX path: which CPUs take it, and its arithmetic (one accumulator per output).

use super::*;

/// AMX-TILE and AMX-INT8 in CPUID leaf 7, and the tile state enabled by the OS (XCR0 bits 17, 18).
#[cfg(all(target_arch = "x86_64", target_os = "linux"))]
pub(crate) fn amx_int8_usable() -> bool {
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
/// variant with AMX is the one loaded when all of these features are present. Never at the AVX2
/// level (`RBEE_CANDLE_GGML_SIMD=avx2`, which follows llama.cpp's haswell build: no AMX buffer
/// there, even on a CPU that has AMX). `RBEE_CANDLE_GGML_AMX=0|1` overrides the detection.
pub fn ggml_uses_amx() -> bool {
    static AMX: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *AMX.get_or_init(|| {
        if let Ok(value) = std::env::var("RBEE_CANDLE_GGML_AMX") {
            return value == "1";
        }
        if crate::ggml_math::SimdLevel::current() != crate::ggml_math::SimdLevel::Avx512 {
            return false;
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

impl QWeight {
    /// ggml's AMX kernels (tinygemm VNNI for one row, AMX tiles for more: the same arithmetic
    /// per output): a single accumulator, one fused multiply-add per block.
    pub(super) fn forward_amx(&self, kind: Kind, data: &[u8], x: &[f32], rows: usize, write: &(dyn Fn(usize, usize, f32) + Sync)) {
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
