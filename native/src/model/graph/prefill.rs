//! The prompt on the graph path, a chunk of up to `Prefill::chunk` tokens at a time: each
//! layer's products go to cuBLAS as GEMMs over the whole chunk, and the rest — norms, RoPE with
//! the KV-cache write, attention, Gemma's post norms — is the decode step's own kernels over the
//! chunk's rows. The chunk writes K/V into the decode path's cache, so decode carries on from
//! it; the last token's residual row is copied into the decode buffers and the decode step's
//! tail (final norm, head, argmax) gives its logits and greedy token.
//!
//! The GEMMs read dequantized weights: a weight group (Q+K+V, o, gate+up, down) is dequantized
//! in pieces of rows into two scratch buffers that take turns, on a second stream, so the
//! dequantization of the next piece (memory-bound) runs under the GEMM of this one
//! (compute-bound), and the scratch stays `PIECE_BYTES` twice whatever the model. The operands
//! are bf16 (the default) or TF32 on f32 (`RBEE_CANDLE_PREFILL_GEMM=tf32`); f16 overflowed on
//! the synthetic 8B model's FFN activations, both of these keep f32's range.
//!
//! Launched eagerly (a few hundred launches a chunk, against tens of milliseconds of GEMMs), on
//! the decoder's stream (the dequantization on its own, joined by events), so it is ordered
//! with the decode graph's replays.

use std::cell::Cell;
use std::sync::Arc;

use candle_core::cuda_backend::cudarc::cublas::{result as blas, sys as blas_sys, CudaBlas};
use candle_core::cuda_backend::cudarc::driver::{result, sys, CudaEvent, CudaStream, LaunchConfig, PushKernelArg};

use super::launches::RopeRows;
use super::{cu, ptr, trace_vram, vram_tracing, DeviceBuffer, GraphDecoder, Mat};
use crate::error::{EngineError, EngineResult};
use crate::model::config::Activation;
use crate::model::graph::args::{AttnArgs, AttnReduceArgs, NormArgs};

/// The operands of the prefill GEMMs (f32 accumulation either way).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum GemmType {
    /// f32 weights and activations, multiplied as TF32 (10-bit mantissas).
    Tf32,
    /// bf16 weights and activations (8-bit mantissas): half the bytes dequantized and twice
    /// the tensor-core rate.
    Bf16,
}

impl GemmType {
    /// `RBEE_CANDLE_PREFILL_GEMM` (tf32 or bf16), else bf16: on an H100 with the 8B shape the bf16
    /// prefill took a 512-token prompt at 1.37x llama.cpp's speed where TF32 managed 0.94x, and
    /// scored the prompt as closely (bench/results/2026-12-06-gpu-h100-prefill-ttft-vram.md).
    pub(super) fn from_env() -> EngineResult<Self> {
        match std::env::var("RBEE_CANDLE_PREFILL_GEMM").as_deref() {
            Err(_) | Ok("") | Ok("bf16") => Ok(Self::Bf16),
            Ok("tf32") => Ok(Self::Tf32),
            Ok(other) => Err(EngineError::invalid_request(format!("RBEE_CANDLE_PREFILL_GEMM: expected tf32 or bf16, got \"{other}\""))),
        }
    }

    fn element_bytes(self) -> usize {
        match self {
            Self::Tf32 => 4,
            Self::Bf16 => 2,
        }
    }

    fn cuda_type(self) -> blas_sys::cudaDataType_t {
        match self {
            Self::Tf32 => blas_sys::cudaDataType_t::CUDA_R_32F,
            Self::Bf16 => blas_sys::cudaDataType_t::CUDA_R_16BF,
        }
    }

    fn compute_type(self) -> blas_sys::cublasComputeType_t {
        match self {
            Self::Tf32 => blas_sys::cublasComputeType_t::CUBLAS_COMPUTE_32F_FAST_TF32,
            Self::Bf16 => blas_sys::cublasComputeType_t::CUBLAS_COMPUTE_32F,
        }
    }

    fn dequant_kernel(self) -> &'static str {
        match self {
            Self::Tf32 => "rbee_dequant_f32",
            Self::Bf16 => "rbee_dequant_bf16",
        }
    }
}

/// Bytes of each of the two dequantization buffers (or the largest weight group, when smaller).
/// 64 MiB holds 4096 rows of an 8B model's 4096-wide f32 weights: GEMMs that size still run at
/// full rate, and the two buffers take 0.13 GB where the whole gate+up in f32 took 0.47 GB.
pub(super) const PIECE_BYTES: usize = 64 << 20;

/// Elements of one dequantization buffer.
fn piece_elements(largest_group: usize, gemm: GemmType) -> usize {
    largest_group.min(PIECE_BYTES / gemm.element_bytes())
}

/// The chunk's buffers (rows = chunk tokens), allocated at load beside the decode buffers.
pub(super) struct Prefill {
    pub chunk: usize,
    gemm: GemmType,
    blas: CudaBlas,
    /// Two dequantization buffers taking turns, `piece` elements each.
    scratch: [DeviceBuffer; 2],
    piece: usize,
    /// The dequantization's stream; `filled[i]` is recorded there after a piece lands in
    /// `scratch[i]`, `freed[i]` on the decoder's stream after the GEMM that read it.
    side: Arc<CudaStream>,
    filled: [CudaEvent; 2],
    freed: [CudaEvent; 2],
    turn: Cell<usize>,
    /// Whether a chunk has run (cuBLAS takes its workspace at its first GEMM: traced once).
    ran: Cell<bool>,
    /// bf16 GEMMs: the input rows rounded to bf16, [rows][max(d, attn, F)].
    act16: Option<DeviceBuffer>,
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

/// A model's sizes as the prefill buffers see them.
#[derive(Clone, Copy)]
pub(super) struct PrefillShape {
    pub d: usize,
    pub attn: usize,
    pub qkv_width: usize,
    pub n_ff: usize,
    pub n_head: usize,
    pub head_dim: usize,
    /// Elements of the largest weight group one GEMM reads (Q+K+V, gate+up, o, down).
    pub largest_group: usize,
    pub gemma: bool,
}

/// The bytes of each of a chunk's buffers: what the VRAM check counts before anything is
/// allocated (`total`), and what `Prefill::new` then allocates.
#[derive(Clone, Copy)]
pub(super) struct PrefillSizes {
    /// Each of the two dequantization buffers.
    scratch: usize,
    /// 0 where there is none (TF32 GEMMs; a model without Gemma's post norms).
    act16: usize,
    branch: usize,
    x: usize,
    y: usize,
    h: usize,
    qkv: usize,
    gu: usize,
    part_o: usize,
    part_ml: usize,
    /// tokens, positions and slots: one 4-byte value a row each.
    per_row: usize,
}

impl PrefillSizes {
    pub(super) fn new(s: &PrefillShape, chunk: usize, gemm: GemmType) -> Self {
        let f32s = |n: usize| 4 * chunk * n;
        Self {
            scratch: gemm.element_bytes() * piece_elements(s.largest_group, gemm),
            act16: if gemm == GemmType::Bf16 { 2 * chunk * s.d.max(s.attn).max(s.n_ff) } else { 0 },
            branch: if s.gemma { f32s(s.d) } else { 0 },
            x: f32s(s.d),
            y: f32s(s.d.max(s.attn)),
            h: f32s(s.n_ff),
            qkv: f32s(s.qkv_width),
            gu: f32s(2 * s.n_ff),
            part_o: f32s(s.n_head * s.head_dim),
            part_ml: f32s(2 * s.n_head),
            per_row: f32s(1),
        }
    }

    pub(super) fn total(&self) -> usize {
        let Self { scratch, act16, branch, x, y, h, qkv, gu, part_o, part_ml, per_row } = *self;
        2 * scratch + act16 + branch + x + y + h + qkv + gu + part_o + part_ml + 3 * per_row
    }
}

impl Prefill {
    /// The buffers `sizes` counted (PrefillSizes::new of the shape the load measured).
    pub(super) fn new(dec: &GraphDecoder, sizes: &PrefillSizes, chunk: usize, gemm: GemmType) -> EngineResult<Self> {
        let ctx = &dec.ctx;
        let blas = CudaBlas::new(dec.stream.clone()).map_err(|e| EngineError::internal(format!("cublas: {e}")))?;
        let mem = &dec.mem;
        let some = |bytes: usize| if bytes == 0 { Ok(None) } else { mem.zeroed(bytes).map(Some) };
        let event = || cu("event", ctx.new_event(Some(sys::CUevent_flags::CU_EVENT_DISABLE_TIMING)));
        Ok(Self {
            chunk,
            gemm,
            blas,
            scratch: [mem.zeroed(sizes.scratch)?, mem.zeroed(sizes.scratch)?],
            piece: sizes.scratch / gemm.element_bytes(),
            side: cu("stream", ctx.new_stream())?,
            filled: [event()?, event()?],
            freed: [event()?, event()?],
            turn: Cell::new(0),
            ran: Cell::new(false),
            act16: some(sizes.act16)?,
            x: mem.zeroed(sizes.x)?,
            branch: some(sizes.branch)?,
            y: mem.zeroed(sizes.y)?,
            h: mem.zeroed(sizes.h)?,
            qkv: mem.zeroed(sizes.qkv)?,
            gu: mem.zeroed(sizes.gu)?,
            part_o: mem.zeroed(sizes.part_o)?,
            part_ml: mem.zeroed(sizes.part_ml)?,
            tokens: mem.zeroed(sizes.per_row)?,
            pos: mem.zeroed(sizes.per_row)?,
            slot: mem.zeroed(sizes.per_row)?,
        })
    }
}

/// Launches a 256-thread kernel with plain arguments (locals: the builder borrows them).
macro_rules! launch256 {
    ($stream:expr, $dec:expr, $name:expr, $grid:expr, $($arg:ident),*) => {{
        let function = $dec.kernels.get($name)?;
        let mut builder = $stream.launch_builder(function);
        $( builder.arg(&$arg); )*
        cu($name, unsafe { builder.launch(LaunchConfig { grid_dim: $grid, block_dim: (256, 1, 1), shared_mem_bytes: 0 }) }).map(|_| ())
    }};
}

fn grid256(k: usize, rows: usize) -> (u32, u32, u32) {
    (k.div_ceil(256) as u32, rows as u32, 1)
}

impl GraphDecoder {
    /// out[t][r] (+)= sum_k W[r][k] * x[t][k] for t < rows, W the rows of `mats` (same K) one
    /// after another and x f32 rows k wide; out row-major with stride `ldo`. The weights go
    /// through the scratch buffers a piece of rows at a time (see the module's comment).
    #[allow(clippy::too_many_arguments)]
    fn product(&self, p: &Prefill, mats: &[&Mat], rows: usize, x: u64, out: u64, ldo: usize, accumulate: bool) -> EngineResult<()> {
        let k = mats[0].shape.k;
        let operand = match &p.act16 {
            Some(act16) => {
                let (n, y) = ((rows * k) as i64, act16.ptr);
                launch256!(self.stream, self, "rbee_f32_to_bf16", ((rows * k).div_ceil(256) as u32, 1, 1), x, n, y)?;
                y
            }
            None => x,
        };
        let total: usize = mats.iter().map(|m| m.shape.rows).sum();
        // At most 65535 rows a piece: the dequantization's grid has a block row per weight row.
        let per_piece = (p.piece / k).clamp(1, total).min(65_535);
        let kernel = p.gemm.dequant_kernel();
        let eb = p.gemm.element_bytes() as u64;
        let mut first = 0;
        while first < total {
            let n = per_piece.min(total - first);
            let turn = p.turn.get();
            p.turn.set(turn ^ 1);
            cu("prefill wait", p.side.wait(&p.freed[turn]))?;
            // The rows first..first+n of the concatenation, mat by mat.
            let (mut before, mut written) = (0, 0);
            for m in mats {
                let (lo, hi) = (first.max(before), (first + n).min(before + m.shape.rows));
                if lo < hi {
                    let (qtype, row_bytes, kk) = (m.shape.qtype.id(), m.shape.row_bytes() as i64, k as i32);
                    let (w, dst) = (m.buffer.ptr + ((lo - before) * m.shape.row_bytes()) as u64, p.scratch[turn].ptr + eb * (written * k) as u64);
                    launch256!(p.side, self, kernel, (k.div_ceil(2048) as u32, (hi - lo) as u32, 1), qtype, w, row_bytes, kk, dst)?;
                    written += hi - lo;
                }
                before += m.shape.rows;
            }
            cu("prefill record", p.filled[turn].record(&p.side))?;
            cu("prefill wait", self.stream.wait(&p.filled[turn]))?;
            self.gemm(p, p.scratch[turn].ptr, n, rows, k, operand, out + 4 * first as u64, ldo, accumulate)?;
            cu("prefill record", p.freed[turn].record(&self.stream))?;
            first += n;
        }
        Ok(())
    }

    /// out[t][r] (+)= sum_k W[r][k] * x[t][k], for r < m, t < rows (row-major both, W and x in
    /// the GEMM type, rows k wide; out f32 with stride ldo).
    #[allow(clippy::too_many_arguments)]
    fn gemm(&self, p: &Prefill, w: u64, m: usize, rows: usize, k: usize, x: u64, out: u64, ldo: usize, accumulate: bool) -> EngineResult<()> {
        let (alpha, beta) = (1.0f32, if accumulate { 1.0f32 } else { 0.0f32 });
        // Column-major view: W is k x m (lda k), x is k x rows (ldb k), out is m x rows (ldc ldo).
        unsafe {
            blas::gemm_ex(
                *p.blas.handle(),
                blas_sys::cublasOperation_t::CUBLAS_OP_T,
                blas_sys::cublasOperation_t::CUBLAS_OP_N,
                m as i32,
                rows as i32,
                k as i32,
                (&alpha as *const f32).cast(),
                w as *const std::ffi::c_void,
                p.gemm.cuda_type(),
                k as i32,
                x as *const std::ffi::c_void,
                p.gemm.cuda_type(),
                k as i32,
                (&beta as *const f32).cast(),
                out as *mut std::ffi::c_void,
                blas_sys::cudaDataType_t::CUDA_R_32F,
                ldo as i32,
                p.gemm.compute_type(),
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
        launch256!(self.stream, self, "rbee_embed_rows", grid256(d, rows), qtype, table, row_bytes, toks, k, scale, out, ldo)?;

        let outs = [p.qkv.ptr, p.qkv.ptr + 4 * (nh * hd) as u64, p.qkv.ptr + 4 * ((nh + nkv) * hd) as u64];
        let q_factor = cfg.q_scale.unwrap_or(1.0) * cfg.kq_scale;
        for (il, layer) in self.layers.iter().enumerate() {
            let swa = cfg.is_swa(il);
            let pre = if gemma && il > 0 { Some((branch, ptr(&self.layers[il - 1].post_ffn_norm))) } else { None };
            self.norm_rows(rows, p.x.ptr, pre, layer.attn_norm.ptr, p.y.ptr)?;
            self.product(p, &[&layer.qkv[0], &layer.qkv[1], &layer.qkv[2]], rows, p.y.ptr, p.qkv.ptr, qkv_ld, false)?;
            for (i, bias) in layer.qkv_bias.iter().enumerate() {
                if let Some(bias) = bias {
                    let (x, ldx, bp, k) = (outs[i], qkv_ld as i32, bias.ptr, layer.qkv[i].shape.rows as i32);
                    launch256!(self.stream, self, "rbee_add_bias", grid256(layer.qkv[i].shape.rows, rows), x, ldx, bp, k)?;
                }
            }
            let rope =
                self.rope_kv(layer, il, rows, &RopeRows { qkv: p.qkv.ptr, k: outs[1], v: outs[2], pos: p.pos.ptr, slot: p.slot.ptr, ld: qkv_ld as i32 })?;
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
            // Into the residual (llama family, beta 1) or into `branch` for Gemma's post norm.
            let (out, accumulate) = if gemma { (branch, false) } else { (p.x.ptr, true) };
            self.product(p, &[&layer.o], rows, p.y.ptr, out, d, accumulate)?;
            let pre = if gemma { Some((branch, ptr(&layer.post_attn_norm))) } else { None };
            self.norm_rows(rows, p.x.ptr, pre, layer.ffn_norm.ptr, p.y.ptr)?;
            self.product(p, &[&layer.gate, &layer.up], rows, p.y.ptr, p.gu.ptr, 2 * f, false)?;
            let (gu, f32_, act, h) = (p.gu.ptr, f as i32, i32::from(cfg.activation == Activation::Gelu), p.h.ptr);
            launch256!(self.stream, self, "rbee_glu_f32", grid256(f, rows), gu, f32_, act, h)?;
            self.product(p, &[&layer.down], rows, p.h.ptr, out, d, accumulate)?;
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
            if !p.ran.replace(true) && vram_tracing() {
                cu("prefill sync", self.stream.synchronize())?;
                trace_vram("the first prefill chunk (cuBLAS's workspace)");
            }
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
