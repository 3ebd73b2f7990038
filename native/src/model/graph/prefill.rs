//! The prompt on the graph path, a chunk of up to `Prefill::chunk` tokens at a time: each
//! layer's products go to cuBLAS as TF32 GEMMs over the whole chunk (the quantized weights are
//! dequantized into one f32 scratch matrix just before their GEMM; f16 operands overflowed on the
//! synthetic 8B model's FFN activations), and the rest — norms, RoPE
//! with the KV-cache write, attention, Gemma's post norms — is the decode step's own kernels over
//! the chunk's rows. The chunk writes K/V into the decode path's cache, so decode carries on from
//! it; the last token's residual row is copied into the decode buffers and the decode step's
//! tail (final norm, head, argmax) gives its logits and greedy token.
//!
//! Launched eagerly (a few hundred launches a chunk, against tens of milliseconds of GEMMs), on
//! the decoder's stream, so it is ordered with the decode graph's replays.

use candle_core::cuda_backend::cudarc::cublas::{result as blas, sys as blas_sys, CudaBlas};
use candle_core::cuda_backend::cudarc::driver::{result, LaunchConfig, PushKernelArg};

use super::{cu, ptr, DeviceBuffer, GraphDecoder, Mat};
use crate::error::{EngineError, EngineResult};
use crate::model::config::Activation;
use crate::model::graph::args::{AttnArgs, AttnReduceArgs, NormArgs, RopeArgs};

/// The chunk's buffers (rows = chunk tokens), allocated at load beside the decode buffers.
pub(super) struct Prefill {
    pub chunk: usize,
    blas: CudaBlas,
    /// The largest weight group of a layer (Q+K+V, gate+up, o, down), dequantized to f32.
    w32: DeviceBuffer,
    x: DeviceBuffer,
    branch: Option<DeviceBuffer>,
    /// f32 norm / attention output, [rows][max(d, attn)].
    y: DeviceBuffer,
    /// The GLU output (the down GEMM's input), f32 [rows][F].
    h: DeviceBuffer,
    qkv: DeviceBuffer,
    /// gate and up of a row side by side, f32 [rows][2F].
    gu: DeviceBuffer,
    part_o: DeviceBuffer,
    part_ml: DeviceBuffer,
    tokens: DeviceBuffer,
    pos: DeviceBuffer,
    slot: DeviceBuffer,
}

/// Bytes of a chunk's buffers (for the VRAM check before anything is allocated).
pub(super) fn prefill_bytes(d: usize, attn: usize, qkv_width: usize, n_ff: usize, n_head: usize, hd: usize, chunk: usize, w32: usize, gemma: bool) -> usize {
    4 * w32 + 4 * chunk * (d * (1 + usize::from(gemma)) + d.max(attn) + qkv_width + 3 * n_ff + n_head * hd + 2 * n_head + 3)
}

impl Prefill {
    pub(super) fn new(dec: &GraphDecoder, chunk: usize) -> EngineResult<Self> {
        let cfg = &dec.config;
        let (d, hd, nh, nkv, f) = (cfg.n_embd, cfg.head_dim, cfg.n_head, cfg.n_head_kv, dec.n_ff);
        let attn = nh * hd;
        let qkv_width = (nh + 2 * nkv) * hd;
        let ctx = &dec.ctx;
        let blas = CudaBlas::new(dec.stream.clone()).map_err(|e| EngineError::internal(format!("cublas: {e}")))?;
        let f32s = |n: usize| DeviceBuffer::zeroed(ctx, 4 * n);
        Ok(Self {
            chunk,
            blas,
            w32: f32s(w32_elements(dec))?,
            x: f32s(chunk * d)?,
            branch: if dec.gemma() { Some(f32s(chunk * d)?) } else { None },
            y: f32s(chunk * d.max(attn))?,
            h: f32s(chunk * f)?,
            qkv: f32s(chunk * qkv_width)?,
            gu: f32s(chunk * 2 * f)?,
            part_o: f32s(chunk * nh * hd)?,
            part_ml: f32s(2 * chunk * nh)?,
            tokens: f32s(chunk)?,
            pos: f32s(chunk)?,
            slot: DeviceBuffer::zeroed(ctx, 4 * chunk)?,
        })
    }
}

/// Elements of the largest weight group one GEMM reads.
pub(super) fn w32_elements(dec: &GraphDecoder) -> usize {
    dec.layers
        .iter()
        .map(|l| {
            let qkv: usize = l.qkv.iter().map(|m| m.shape.rows * m.shape.k).sum();
            let gu = (l.gate.shape.rows + l.up.shape.rows) * l.gate.shape.k;
            qkv.max(gu).max(l.o.shape.rows * l.o.shape.k).max(l.down.shape.rows * l.down.shape.k)
        })
        .max()
        .unwrap_or(0)
}

/// Launches a 256-thread kernel with plain arguments (locals: the builder borrows them).
macro_rules! launch256 {
    ($dec:expr, $name:expr, $grid:expr, $($arg:ident),*) => {{
        let function = $dec.kernels.get($name)?;
        let mut builder = $dec.stream.launch_builder(function);
        $( builder.arg(&$arg); )*
        cu($name, unsafe { builder.launch(LaunchConfig { grid_dim: $grid, block_dim: (256, 1, 1), shared_mem_bytes: 0 }) }).map(|_| ())
    }};
}

fn grid256(k: usize, rows: usize) -> (u32, u32, u32) {
    (k.div_ceil(256) as u32, rows as u32, 1)
}

impl GraphDecoder {
    /// Dequantizes `mats` (same K) one after another into the f32 scratch.
    fn dequant(&self, p: &Prefill, mats: &[&Mat]) -> EngineResult<()> {
        let mut offset = 0u64;
        for m in mats {
            let (qtype, w, row_bytes, k, out) = (m.shape.qtype.id(), m.buffer.ptr, m.shape.row_bytes() as i64, m.shape.k as i32, p.w32.ptr + offset);
            launch256!(self, "rbee_dequant_f32", grid256(m.shape.k, m.shape.rows), qtype, w, row_bytes, k, out)?;
            offset += 4 * (m.shape.rows * m.shape.k) as u64;
        }
        Ok(())
    }

    /// out[t][r] (+)= sum_k W32[r][k] * x[t][k], for t < rows (row-major both; x rows are k wide).
    #[allow(clippy::too_many_arguments)]
    fn gemm(&self, p: &Prefill, m: usize, rows: usize, k: usize, x: u64, out: u64, ldo: usize, accumulate: bool) -> EngineResult<()> {
        let (alpha, beta) = (1.0f32, if accumulate { 1.0f32 } else { 0.0f32 });
        // Column-major view: W32 is k x m (lda k), x is k x rows (ldb k), out is m x rows (ldc ldo).
        unsafe {
            blas::gemm_ex(
                *p.blas.handle(),
                blas_sys::cublasOperation_t::CUBLAS_OP_T,
                blas_sys::cublasOperation_t::CUBLAS_OP_N,
                m as i32,
                rows as i32,
                k as i32,
                (&alpha as *const f32).cast(),
                p.w32.ptr as *const std::ffi::c_void,
                blas_sys::cudaDataType_t::CUDA_R_32F,
                k as i32,
                x as *const std::ffi::c_void,
                blas_sys::cudaDataType_t::CUDA_R_32F,
                k as i32,
                (&beta as *const f32).cast(),
                out as *mut std::ffi::c_void,
                blas_sys::cudaDataType_t::CUDA_R_32F,
                ldo as i32,
                blas_sys::cublasComputeType_t::CUBLAS_COMPUTE_32F_FAST_TF32,
                blas_sys::cublasGemmAlgo_t::CUBLAS_GEMM_DEFAULT,
            )
        }
        .map_err(|e| EngineError::internal(format!("cublas gemm ({m} x {rows} x {k}): {e}")))
    }

    fn norm_rows(&self, rows: usize, x: u64, pre: Option<(u64, u64)>, w: u64, y: u64) -> EngineResult<()> {
        let d = self.config.n_embd as i32;
        let args = NormArgs {
            x,
            pre: pre.map_or(0, |p| p.0),
            w_pre: pre.map_or(0, |p| p.1),
            w,
            yq: 0,
            yds: 0,
            y,
            ldx: d,
            ldpre: d,
            ldyq: 0,
            ldyds: 0,
            ldy: d,
            k: d,
            eps: self.config.eps,
        };
        self.launch("rbee_rmsnorm_q8_1", (rows as u32, 1, 1), 1024, 4 * self.config.n_embd as u32, &args)
    }

    /// Evaluates `tokens` (at most one chunk) at positions `start..` of `slot`: K/V into that
    /// slot's cache, and the residual rows of the chunk into the prefill buffers.
    fn prefill_chunk(&self, p: &Prefill, tokens: &[u32], start: usize, slot: usize) -> EngineResult<()> {
        let cfg = &self.config;
        let rows = tokens.len();
        let (d, hd, nh, nkv, f) = (cfg.n_embd, cfg.head_dim, cfg.n_head, cfg.n_head_kv, self.n_ff);
        let attn_width = nh * hd;
        let qkv_ld = (nh + 2 * nkv) * hd;
        let gemma = self.gemma();
        let branch = ptr(&p.branch);
        let stream = self.stream.cu_stream();
        let ids: Vec<i32> = tokens.iter().map(|&t| t as i32).collect();
        let positions: Vec<i32> = (0..rows).map(|r| (start + r) as i32).collect();
        cu("prefill tokens", unsafe { result::memcpy_htod_async(p.tokens.ptr, &ids[..], stream) })?;
        cu("prefill positions", unsafe { result::memcpy_htod_async(p.pos.ptr, &positions[..], stream) })?;
        let slots = vec![slot as i32; rows];
        cu("prefill slots", unsafe { result::memcpy_htod_async(p.slot.ptr, &slots[..], stream) })?;

        let emb = &self.embeddings;
        let (qtype, table, row_bytes, k, scale, out, ldo, toks) =
            (emb.shape.qtype.id(), emb.buffer.ptr, emb.shape.row_bytes() as i64, d as i32, cfg.embed_scale.unwrap_or(1.0), p.x.ptr, d as i32, p.tokens.ptr);
        launch256!(self, "rbee_embed_rows", grid256(d, rows), qtype, table, row_bytes, toks, k, scale, out, ldo)?;

        let outs = [p.qkv.ptr, p.qkv.ptr + 4 * (nh * hd) as u64, p.qkv.ptr + 4 * ((nh + nkv) * hd) as u64];
        let q_factor = cfg.q_scale.unwrap_or(1.0) * cfg.kq_scale;
        for (il, layer) in self.layers.iter().enumerate() {
            let swa = cfg.is_swa(il);
            let pre = if gemma && il > 0 { Some((branch, ptr(&self.layers[il - 1].post_ffn_norm))) } else { None };
            self.norm_rows(rows, p.x.ptr, pre, layer.attn_norm.ptr, p.y.ptr)?;
            self.dequant(p, &[&layer.qkv[0], &layer.qkv[1], &layer.qkv[2]])?;
            self.gemm(p, qkv_ld, rows, d, p.y.ptr, p.qkv.ptr, qkv_ld, false)?;
            for (i, bias) in layer.qkv_bias.iter().enumerate() {
                if let Some(bias) = bias {
                    let (x, ldx, bp, k) = (outs[i], qkv_ld as i32, bias.ptr, layer.qkv[i].shape.rows as i32);
                    launch256!(self, "rbee_add_bias", grid256(layer.qkv[i].shape.rows, rows), x, ldx, bp, k)?;
                }
            }
            let cache_offset = 2 * (il * self.layer_stride) as u64;
            let rope = RopeArgs {
                q: p.qkv.ptr,
                k: outs[1],
                v: outs[2],
                q_out: p.qkv.ptr,
                k_cache: self.k_cache.ptr + cache_offset,
                v_cache: self.v_cache.ptr + cache_offset,
                pos: p.pos.ptr,
                slot: p.slot.ptr,
                inv_freq: self.inv_freq[usize::from(swa && self.inv_freq.len() > 1)].ptr,
                freq_factors: ptr(&self.freq_factors),
                q_norm: ptr(&layer.q_norm),
                k_norm: ptr(&layer.k_norm),
                slot_stride: self.slot_stride as i64,
                ldq: qkv_ld as i32,
                ldk: qkv_ld as i32,
                ldv: qkv_ld as i32,
                ldqo: qkv_ld as i32,
                n_head: nh as i32,
                n_kv: nkv as i32,
                hd: hd as i32,
                n_rot: cfg.n_rot as i32,
                cap: self.capacity as i32,
                neox: i32::from(cfg.rope_neox),
                freq_scale: if swa { 1.0 } else { cfg.rope_freq_scale },
                eps: cfg.eps,
            };
            self.launch("rbee_rope_kv", ((nh + 2 * nkv) as u32, rows as u32, 1), (hd / 2) as u32, 0, &rope)?;
            // One split per row: the chunk's rows and KV heads are blocks enough.
            let att = AttnArgs {
                q: p.qkv.ptr,
                k_cache: rope.k_cache,
                v_cache: rope.v_cache,
                pos: p.pos.ptr,
                slot: p.slot.ptr,
                part_o: p.part_o.ptr,
                part_ml: p.part_ml.ptr,
                slot_stride: self.slot_stride as i64,
                ldq: qkv_ld as i32,
                n_head: nh as i32,
                n_kv: nkv as i32,
                cap: self.capacity as i32,
                nsplit: 1,
                window: if swa { cfg.swa_window.unwrap_or(0) as i32 } else { 0 },
                scale: q_factor,
                pad: 0,
            };
            self.launch(&format!("rbee_attn_split_{hd}"), (1, nkv as u32, rows as u32), 128, 0, &att)?;
            let reduce = AttnReduceArgs {
                part_o: p.part_o.ptr,
                part_ml: p.part_ml.ptr,
                out: p.y.ptr,
                yq: 0,
                yds: 0,
                n_head: nh as i32,
                nsplit: 1,
                ldo: attn_width as i32,
                ldyq: 0,
                ldyds: 0,
                pad: 0,
            };
            self.launch(&format!("rbee_attn_reduce_{hd}"), (nh as u32, rows as u32, 1), hd as u32, 0, &reduce)?;
            self.dequant(p, &[&layer.o])?;
            // Into the residual (llama family, beta 1) or into `branch` for Gemma's post norm.
            let (out, accumulate) = if gemma { (branch, false) } else { (p.x.ptr, true) };
            self.gemm(p, d, rows, attn_width, p.y.ptr, out, d, accumulate)?;
            let pre = if gemma { Some((branch, ptr(&layer.post_attn_norm))) } else { None };
            self.norm_rows(rows, p.x.ptr, pre, layer.ffn_norm.ptr, p.y.ptr)?;
            self.dequant(p, &[&layer.gate, &layer.up])?;
            self.gemm(p, 2 * f, rows, d, p.y.ptr, p.gu.ptr, 2 * f, false)?;
            let (gu, f32_, act, h) = (p.gu.ptr, f as i32, i32::from(cfg.activation == Activation::Gelu), p.h.ptr);
            launch256!(self, "rbee_glu_f32", grid256(f, rows), gu, f32_, act, h)?;
            self.dequant(p, &[&layer.down])?;
            self.gemm(p, d, rows, f, p.h.ptr, out, d, accumulate)?;
        }
        Ok(())
    }

    /// The prompt through the GEMM prefill, chunk by chunk; leaves the last token's logits and
    /// greedy token in the decode buffers (row 0), as a batch-1 replay would.
    pub(super) fn prefill(&mut self, tokens: &[u32], start: usize, slot: usize) -> EngineResult<()> {
        let p = self.prefill.take().ok_or_else(|| EngineError::internal("no prefill buffers"))?;
        let outcome = self.prefill_with(&p, tokens, start, slot);
        self.prefill = Some(p);
        outcome
    }

    fn prefill_with(&self, p: &Prefill, tokens: &[u32], start: usize, slot: usize) -> EngineResult<()> {
        let mut rows = 0;
        for (c, chunk) in tokens.chunks(p.chunk).enumerate() {
            self.prefill_chunk(p, chunk, start + c * p.chunk, slot)?;
            rows = chunk.len();
        }
        // The last token's residual row (and Gemma's pending FFN branch) into the decode buffers,
        // then the decode step's tail: final norm, head, argmax.
        let d = self.config.n_embd;
        let stream = self.stream.cu_stream();
        let row = (4 * d * (rows - 1)) as u64;
        cu("prefill last row", unsafe { result::memcpy_dtod_async(self.buffers.x.ptr, p.x.ptr + row, 4 * d, stream) })?;
        if let (Some(to), Some(from)) = (&self.buffers.branch, &p.branch) {
            cu("prefill last branch", unsafe { result::memcpy_dtod_async(to.ptr, from.ptr + row, 4 * d, stream) })?;
        }
        let last = [(start + tokens.len() - 1) as i32];
        cu("position in", unsafe { result::memcpy_htod_async(self.buffers.pos.ptr, &last[..], stream) })?;
        self.enqueue_head(1)?;
        Ok(())
    }
}

/// Prompt tokens the GEMM prefill takes at once: `RBEE_CANDLE_PREFILL_CHUNK` (16..=4096), else 512.
pub(super) fn prefill_chunk_size() -> EngineResult<usize> {
    match std::env::var("RBEE_CANDLE_PREFILL_CHUNK") {
        Ok(value) if !value.is_empty() => match value.parse::<usize>() {
            Ok(n) if (16..=4096).contains(&n) => Ok(n),
            _ => Err(EngineError::invalid_request(format!("RBEE_CANDLE_PREFILL_CHUNK: expected 16..4096, got \"{value}\""))),
        },
        _ => Ok(512),
    }
}

/// Prompts up to this many tokens stay on the batch-8 decode graph. Measured on an H100 with the
/// 8B shape (bench/results/2026-12-06-gpu-h100-issue11-same-run.md): the GEMM prefill costs a
/// fixed ~45 ms a chunk (every weight dequantized) plus little per token; the batch-8 graph costs
/// ~1.5 ms per token (16 tokens: 339 vs 679 tok/s; 1000 tokens: 6475 vs 615). They cross near 30.
pub const GEMM_PREFILL_MIN: usize = 32;

/// Whether a prompt of `n` tokens takes the GEMM prefill, unless `RBEE_CANDLE_PREFILL=graph`
/// keeps every prompt on the batch-8 decode graph.
pub(super) fn use_gemm_prefill(n: usize) -> bool {
    n > GEMM_PREFILL_MIN && std::env::var("RBEE_CANDLE_PREFILL").map_or(true, |v| v != "graph")
}
