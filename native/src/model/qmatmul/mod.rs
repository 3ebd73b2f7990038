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

mod activations;
mod amx;
mod blocks;
#[cfg(target_arch = "x86_64")]
mod simd;
#[cfg(test)]
mod tests;

use candle_core::quantized::{GgmlDType, QMatMul, QTensor};
use candle_core::{Device, Module, Tensor};

use crate::error::{EngineError, EngineResult};

use activations::{f16_at, hsum8};
pub use activations::{quantize_q8_0, quantize_q8_k, ActQ8K, ActQ8_0};
pub use amx::ggml_uses_amx;
use blocks::for_columns;
pub(crate) use blocks::{block_lanes, q4k_header, q4k_isum, q6k_lanes};
use blocks::{unpack_q4k, unpack_q6k, unpack_q8_family};

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

/// A weight matrix of shape (out_features, in_features).
pub struct QWeight {
    inner: Inner,
    pub out_features: usize,
    pub in_features: usize,
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
