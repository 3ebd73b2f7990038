//! The decode step's kernel launches (products, norm, the GLU epilogue, RoPE into the KV cache,
//! which the GEMM prefill shares), as programmatic dependent launches where the GPU has them:
//! what `enqueue_step` strings together.

use std::ffi::c_void;

use candle_core::cuda_backend::cudarc::driver::{sys, DeviceRepr};

use super::super::args::{GluEpilogueArgs, MmvqArgs, MmvqSeg, NormArgs, RopeArgs};
use super::super::plan;
use super::{cu, ptr, GraphDecoder, Layer, Mat};
use crate::error::EngineResult;
use crate::model::config::Activation;

impl GraphDecoder {
    pub(super) fn launch<A: DeviceRepr>(&self, name: &str, grid: (u32, u32, u32), block: u32, shared: u32, args: &A) -> EngineResult<()> {
        let mut params = [std::ptr::from_ref(args).cast_mut().cast::<c_void>()];
        // SAFETY: every kernel launched this way takes one argument struct, `A` mirrors it (args.rs).
        unsafe { self.launch_params(name, grid, block, shared, &mut params) }
    }

    /// Launches a decode kernel on the decode stream; with `pdl`, as a programmatic dependent
    /// launch (common.cuh's pdl_enter), which stream capture keeps as the graph's edge.
    ///
    /// # Safety
    /// `params` must point at the kernel's arguments, in order and of its types.
    pub(super) unsafe fn launch_params(&self, name: &str, grid: (u32, u32, u32), block: u32, shared: u32, params: &mut [*mut c_void]) -> EngineResult<()> {
        let function = self.kernels.get(name)?;
        let mut attribute: sys::CUlaunchAttribute = unsafe { std::mem::zeroed() };
        attribute.id = sys::CUlaunchAttributeID::CU_LAUNCH_ATTRIBUTE_PROGRAMMATIC_STREAM_SERIALIZATION;
        attribute.value.programmaticStreamSerializationAllowed = 1;
        let config = sys::CUlaunchConfig {
            gridDimX: grid.0,
            gridDimY: grid.1,
            gridDimZ: grid.2,
            blockDimX: block,
            blockDimY: 1,
            blockDimZ: 1,
            sharedMemBytes: shared,
            hStream: self.stream.cu_stream(),
            attrs: if self.pdl { &mut attribute } else { std::ptr::null_mut() },
            numAttrs: u32::from(self.pdl),
        };
        let status = unsafe { sys::cuLaunchKernelEx(&config, function.cu_function(), params.as_mut_ptr(), std::ptr::null_mut()) };
        cu(name, status.result())
    }

    pub(super) fn norm(&self, rows: usize, weight: u64, pre: Option<(u64, u64)>) -> EngineResult<()> {
        let (cfg, b) = (&self.config, &self.buffers);
        let d = cfg.n_embd as i32;
        let args = NormArgs {
            x: b.x.ptr,
            pre: pre.map_or(0, |p| p.0),
            w_pre: pre.map_or(0, |p| p.1),
            w: weight,
            yq: b.xq.ptr,
            yds: b.xds.ptr,
            y: 0,
            ldx: d,
            ldpre: d,
            ldyq: d,
            ldyds: d / 32,
            ldy: 0,
            k: d,
            eps: cfg.eps,
        };
        self.launch("rbee_rmsnorm_q8_1", (rows as u32, 1, 1), 1024, 4 * cfg.n_embd as u32, &args)
    }

    /// mmvq over up to three segments that share a type and K: one launch per group of up to
    /// MAX_KERNEL_BATCH batch rows (each group reads the weights once; a row's arithmetic is the
    /// same in any group). Returns the grid and the launch count.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn mmvq(
        &self,
        rows: usize,
        segs: &[(&Mat, u64, u64, i32, i32)],
        xq: u64,
        xds: u64,
        k: usize,
        head: Option<(u64, u64)>,
    ) -> EngineResult<(u32, usize)> {
        let total: usize = segs.iter().map(|s| s.0.shape.rows).sum();
        let wpr = plan::warps_per_row(&segs[0].0.shape, total, self.sms);
        if let Some(grid) = self.mmq(rows, segs, xq, xds, k, head, wpr)? {
            return Ok((grid, 1));
        }
        let mut launches = 0;
        let mut grid = 0;
        for c0 in (0..rows).step_by(plan::MAX_KERNEL_BATCH) {
            let nc = (rows - c0).min(plan::MAX_KERNEL_BATCH);
            let at = |base: u64, ld: i32| if base == 0 { 0 } else { base + 4 * (c0 * ld as usize) as u64 };
            let segs: Vec<_> = segs.iter().map(|&(mat, out, res, ldo, ldr)| (mat, at(out, ldo), at(res, ldr), ldo, ldr)).collect();
            let (xq, xds) = (xq + (c0 * k) as u64, xds + 4 * (c0 * (k / 32)) as u64);
            let first = segs[0].0;
            let total: usize = segs.iter().map(|s| s.0.shape.rows).sum();
            let wpr = plan::warps_per_row(&first.shape, total, self.sms);
            grid = if head.is_some() { plan::head_grid(total, wpr, self.sms) } else { plan::mmvq_grid(total, wpr) };
            let head = head.map(|(val, idx)| (val + 4 * (c0 * grid as usize) as u64, idx + 4 * (c0 * grid as usize) as u64));
            self.mmvq_group(nc, &segs, xq, xds, k, head, grid, wpr)?;
            launches += 1;
        }
        Ok((grid, launches))
    }

    /// The whole product in one MMQ launch when plan::mmq_kernel has a kernel for it (more than
    /// 8 rows of K-quant weights): each weight block read once for up to 32 rows, every row's
    /// bits those of the mat-vec kernels at `wpr` warps per row. Returns its grid, or None.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn mmq(
        &self,
        rows: usize,
        segs: &[(&Mat, u64, u64, i32, i32)],
        xq: u64,
        xds: u64,
        k: usize,
        head: Option<(u64, u64)>,
        wpr: i32,
    ) -> EngineResult<Option<u32>> {
        if !plan::mmq_enabled() {
            return Ok(None);
        }
        let seg_rows: Vec<usize> = segs.iter().map(|s| s.0.shape.rows).collect();
        let Some((name, cols)) = plan::mmq_kernel(segs[0].0.shape.qtype, wpr, rows, &seg_rows) else {
            return Ok(None);
        };
        let tiles = (seg_rows.iter().sum::<usize>() / plan::MMQ_TILE_ROWS) as u32;
        // The head's blocks loop over its tiles: one argmax partial per block and row.
        let grid = if head.is_some() { tiles.min(plan::head_grid_cap(self.sms)) } else { tiles };
        let mut args = self.mmvq_args(segs, xq, xds, k, head, grid, wpr);
        args.ncols = rows as i32;
        self.launch(&name, (grid, rows.div_ceil(cols) as u32, 1), 256, 0, &args)?;
        Ok(Some(grid))
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) fn mmvq_group(
        &self,
        rows: usize,
        segs: &[(&Mat, u64, u64, i32, i32)],
        xq: u64,
        xds: u64,
        k: usize,
        head: Option<(u64, u64)>,
        grid: u32,
        wpr: i32,
    ) -> EngineResult<()> {
        let args = self.mmvq_args(segs, xq, xds, k, head, grid, wpr);
        let name = format!("rbee_mmvq_{}_{rows}", segs[0].0.shape.qtype.kernel_name());
        self.launch(&name, (grid, 1, 1), 128, 0, &args)
    }

    /// The arguments the mat-vec and MMQ kernels share (`grid` blocks leave argmax partials).
    #[allow(clippy::too_many_arguments)]
    pub(super) fn mmvq_args(
        &self,
        segs: &[(&Mat, u64, u64, i32, i32)],
        xq: u64,
        xds: u64,
        k: usize,
        head: Option<(u64, u64)>,
        grid: u32,
        wpr: i32,
    ) -> MmvqArgs {
        let mut args = MmvqArgs {
            xq,
            xds,
            w_stride: segs[0].0.shape.row_bytes() as i64,
            nseg: segs.len() as i32,
            k: k as i32,
            ldxq: k as i32,
            ldxds: (k / 32) as i32,
            warps_per_row: wpr,
            softcap: if head.is_some() { self.config.final_logit_softcap.unwrap_or(0.0) } else { 0.0 },
            ..Default::default()
        };
        for (i, &(mat, out, res, ldo, ldr)) in segs.iter().enumerate() {
            args.seg[i] = MmvqSeg { w: mat.buffer.ptr, out, res, rows: mat.shape.rows as i32, ldo, ldr, pad: 0 };
        }
        if let Some((val, idx)) = head {
            args.argmax_val = val;
            args.argmax_idx = idx;
            args.ld_argmax = grid as i32;
        }
        args
    }

    /// Gate and up as two segments of one MMQ launch at one warp per row (the fused GLU kernel's
    /// float order), then act(gate) * up quantized for the down projection: the same q8_1 bits
    /// as rbee_mmvq_glu. None (and nothing launched) where plan::mmq_kernel has no kernel.
    pub(super) fn glu_mmq(&self, rows: usize, layer: &Layer) -> EngineResult<Option<usize>> {
        let (b, d, f) = (&self.buffers, self.config.n_embd, self.n_ff);
        let Some((g, u)) = &b.glu else { return Ok(None) };
        if layer.gate.shape.qtype != layer.up.shape.qtype || layer.gate.shape.row_bytes() != layer.up.shape.row_bytes() {
            return Ok(None);
        }
        let segs = [(&layer.gate, g.ptr, 0, f as i32, 0), (&layer.up, u.ptr, 0, f as i32, 0)];
        if self.mmq(rows, &segs, b.xq.ptr, b.xds.ptr, d, None, 1)?.is_none() {
            return Ok(None);
        }
        let epilogue = GluEpilogueArgs {
            g: g.ptr,
            u: u.ptr,
            yq: b.hq.ptr,
            yds: b.hds.ptr,
            y: 0,
            ldg: f as i32,
            ldyq: f as i32,
            ldyds: (f / 32) as i32,
            ldy: 0,
            act: i32::from(self.config.activation == Activation::Gelu),
            pad: 0,
        };
        self.launch("rbee_glu_q8_1", ((f / 32) as u32, rows as u32, 1), 32, 0, &epilogue)?;
        Ok(Some(2))
    }
}

/// Where RoPE finds a step's (or a prefill chunk's) rows: the QKV products (Q at `qkv`, K and V
/// at `k` and `v`, each row `ld` floats apart) and each row's position and KV-cache slot.
pub(super) struct RopeRows {
    pub qkv: u64,
    pub k: u64,
    pub v: u64,
    pub pos: u64,
    pub slot: u64,
    pub ld: i32,
}

impl GraphDecoder {
    /// RoPE (and Gemma's Q/K norms) of `rows` rows of layer `il`, Q in place, K and V into the
    /// layer's KV cache; returns the arguments, whose cache addresses the attention reads.
    pub(super) fn rope_kv(&self, layer: &Layer, il: usize, rows: usize, at: &RopeRows) -> EngineResult<RopeArgs> {
        let cfg = &self.config;
        let (nh, nkv, hd) = (cfg.n_head, cfg.n_head_kv, cfg.head_dim);
        let swa = cfg.is_swa(il);
        let cache_offset = 2 * (il * self.layer_stride) as u64;
        let rope = RopeArgs {
            q: at.qkv,
            k: at.k,
            v: at.v,
            q_out: at.qkv,
            k_cache: self.k_cache.ptr + cache_offset,
            v_cache: self.v_cache.ptr + cache_offset,
            pos: at.pos,
            slot: at.slot,
            inv_freq: self.inv_freq[usize::from(swa && self.inv_freq.len() > 1)].ptr,
            freq_factors: ptr(&self.freq_factors),
            q_norm: ptr(&layer.q_norm),
            k_norm: ptr(&layer.k_norm),
            slot_stride: self.slot_stride as i64,
            ldq: at.ld,
            ldk: at.ld,
            ldv: at.ld,
            ldqo: at.ld,
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
        Ok(rope)
    }
}
