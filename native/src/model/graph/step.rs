//! A decode step: its kernels enqueued (and captured once per batch bucket), and each step's
//! rows laid out, replayed and read back.

use candle_core::cuda_backend::cudarc::driver::{result, sys};

use super::super::args::{AttnArgs, AttnReduceArgs, GluArgs};
use super::launches::RopeRows;
use super::{cu, param, plan, prefill, ptr, trace_vram, Graph, GraphDecoder};
use crate::error::{EngineError, EngineResult};
use crate::model::config::Activation;
use crate::model::decoder::StepOutput;
use crate::model::Segment;

impl GraphDecoder {
    /// Enqueues one decode step for `rows` batch rows on the stream; returns the kernel count.
    /// Reads the token ids and positions from device memory, writes the next greedy token of
    /// each row over its token id and advances its position, so the same launches (or the
    /// graph captured from them) serve every step.
    pub(super) fn enqueue_step(&self, rows: usize) -> EngineResult<usize> {
        let (cfg, b) = (&self.config, &self.buffers);
        let (d, hd, nh, nkv) = (cfg.n_embd, cfg.head_dim, cfg.n_head, cfg.n_head_kv);
        let attn_width = nh * hd;
        let qkv_ld = ((nh + 2 * nkv) * hd) as i32;
        let gemma = self.gemma();
        let branch = ptr(&b.branch);
        let nsplit = self.nsplit;
        let mut kernels = 0;

        let emb = &self.embeddings;
        let (mut qtype, mut table, mut row_bytes, mut toks) = (emb.shape.qtype.id(), emb.buffer.ptr, emb.shape.row_bytes() as i64, b.tokens.ptr);
        let (mut k, mut scale, mut out, mut ldo) = (d as i32, cfg.embed_scale.unwrap_or(1.0), b.x.ptr, d as i32);
        let mut params =
            [param(&mut qtype), param(&mut table), param(&mut row_bytes), param(&mut toks), param(&mut k), param(&mut scale), param(&mut out), param(&mut ldo)];
        // SAFETY: rbee_embed_rows(int, const uint8_t*, long long, const int*, int, float, float*, int).
        unsafe { self.launch_params("rbee_embed_rows", (d.div_ceil(256) as u32, rows as u32, 1), 256, 0, &mut params)? };
        kernels += 1;

        let outs = [b.qkv.ptr, b.qkv.ptr + 4 * (nh * hd) as u64, b.qkv.ptr + 4 * ((nh + nkv) * hd) as u64];
        let q_factor = cfg.q_scale.unwrap_or(1.0) * cfg.kq_scale;
        for (il, layer) in self.layers.iter().enumerate() {
            let swa = cfg.is_swa(il);
            // Gemma: the previous layer's FFN output is still in `branch`; its post norm and the
            // residual add happen in this norm's prologue.
            let pre = if gemma && il > 0 { Some((branch, ptr(&self.layers[il - 1].post_ffn_norm))) } else { None };
            self.norm(rows, layer.attn_norm.ptr, pre)?;
            kernels += 1;
            let types = [layer.qkv[0].shape.qtype, layer.qkv[1].shape.qtype, layer.qkv[2].shape.qtype];
            for (first, count) in plan::qkv_launches(types) {
                let segs: Vec<_> = (first..first + count).map(|i| (&layer.qkv[i], outs[i], ptr(&layer.qkv_bias[i]), qkv_ld, 0)).collect();
                kernels += self.mmvq(rows, &segs, b.xq.ptr, b.xds.ptr, d, None)?.1;
            }
            let rope = self.rope_kv(layer, il, rows, &RopeRows { qkv: b.qkv.ptr, k: outs[1], v: outs[2], pos: b.pos.ptr, slot: b.slot.ptr, ld: qkv_ld })?;
            let attn = AttnArgs {
                q: b.qkv.ptr,
                k_cache: rope.k_cache,
                v_cache: rope.v_cache,
                pos: b.pos.ptr,
                slot: b.slot.ptr,
                part_o: b.part_o.ptr,
                part_ml: b.part_ml.ptr,
                slot_stride: self.slot_stride as i64,
                ldq: qkv_ld,
                n_head: nh as i32,
                n_kv: nkv as i32,
                cap: self.capacity as i32,
                nsplit: nsplit as i32,
                window: if swa { cfg.swa_window.unwrap_or(0) as i32 } else { 0 },
                scale: q_factor,
                pad: 0,
            };
            self.launch(&format!("rbee_attn_split_{hd}"), (nsplit as u32, nkv as u32, rows as u32), 128, 0, &attn)?;
            let reduce = AttnReduceArgs {
                part_o: b.part_o.ptr,
                part_ml: b.part_ml.ptr,
                out: 0,
                yq: b.aq.ptr,
                yds: b.ads.ptr,
                n_head: nh as i32,
                nsplit: nsplit as i32,
                ldo: 0,
                ldyq: attn_width as i32,
                ldyds: (attn_width / 32) as i32,
                pad: 0,
            };
            self.launch(&format!("rbee_attn_reduce_{hd}"), (nh as u32, rows as u32, 1), hd as u32, 0, &reduce)?;
            kernels += 3;
            // o-projection: into the residual (llama family) or into `branch` for Gemma's post norm;
            // in a group, this rank's part first, then the sum of every rank's (tp.rs).
            let (out, res) = if gemma { (branch, 0) } else { (b.x.ptr, b.x.ptr) };
            let (o_out, o_res) = self.tp_part(2 * il).unwrap_or((out, res));
            kernels += self.mmvq(rows, &[(&layer.o, o_out, o_res, d as i32, d as i32)], b.aq.ptr, b.ads.ptr, attn_width, None)?.1;
            kernels += self.tp_reduce(rows, 2 * il, out, !gemma)?;
            let pre = if gemma { Some((branch, ptr(&layer.post_attn_norm))) } else { None };
            self.norm(rows, layer.ffn_norm.ptr, pre)?;
            if let Some(n) = self.glu_mmq(rows, layer)? {
                kernels += n;
            } else {
                for c0 in (0..rows).step_by(plan::MAX_KERNEL_BATCH) {
                    let nc = (rows - c0).min(plan::MAX_KERNEL_BATCH);
                    let glu = GluArgs {
                        w_gate: layer.gate.buffer.ptr,
                        w_up: layer.up.buffer.ptr,
                        xq: b.xq.ptr + (c0 * d) as u64,
                        xds: b.xds.ptr + 4 * (c0 * (d / 32)) as u64,
                        yq: b.hq.ptr + (c0 * self.n_ff) as u64,
                        yds: b.hds.ptr + 4 * (c0 * (self.n_ff / 32)) as u64,
                        y: 0,
                        w_stride: layer.gate.shape.row_bytes() as i64,
                        k: d as i32,
                        f: self.n_ff as i32,
                        ldxq: d as i32,
                        ldxds: (d / 32) as i32,
                        ldyq: self.n_ff as i32,
                        ldyds: (self.n_ff / 32) as i32,
                        ldy: 0,
                        act: i32::from(cfg.activation == Activation::Gelu),
                    };
                    let glu_name = format!("rbee_mmvq_glu_{}_{nc}", layer.gate.shape.qtype.kernel_name());
                    self.launch(&glu_name, ((self.n_ff / 32) as u32, 1, 1), 256, 0, &glu)?;
                    kernels += 1;
                }
            }
            let (down_out, down_res) = self.tp_part(2 * il + 1).unwrap_or((out, res));
            kernels += self.mmvq(rows, &[(&layer.down, down_out, down_res, d as i32, d as i32)], b.hq.ptr, b.hds.ptr, self.n_ff, None)?.1;
            kernels += 1 + self.tp_reduce(rows, 2 * il + 1, out, !gemma)?;
        }
        kernels += self.enqueue_head(rows)?;
        Ok(kernels)
    }

    /// The end of a step: final norm (Gemma: the last FFN branch's post norm and residual add
    /// first), the output head with per-block argmax partials, and the greedy token of each row.
    pub(super) fn enqueue_head(&self, rows: usize) -> EngineResult<usize> {
        let (cfg, b) = (&self.config, &self.buffers);
        let branch = ptr(&b.branch);
        let d = cfg.n_embd;
        let pre = if self.gemma() { self.layers.last().map(|l| (branch, ptr(&l.post_ffn_norm))) } else { None };
        self.norm(rows, self.output_norm.ptr, pre)?;
        if self.tp.is_some() {
            return Ok(1 + self.tp_head(rows)?);
        }
        let vocab = cfg.n_vocab as i32;
        let (grid, launches) =
            self.mmvq(rows, &[(self.head(), b.logits.ptr, 0, vocab, 0)], b.xq.ptr, b.xds.ptr, d, Some((b.argmax_val.ptr, b.argmax_idx.ptr)))?;
        let (mut val, mut idx, mut nparts, mut ld) = (b.argmax_val.ptr, b.argmax_idx.ptr, grid as i32, grid as i32);
        let (mut token, mut no_value, mut pos) = (b.tokens.ptr, 0u64, b.pos.ptr);
        let mut params = [param(&mut val), param(&mut idx), param(&mut nparts), param(&mut ld), param(&mut token), param(&mut no_value), param(&mut pos)];
        // SAFETY: rbee_argmax_final(const float*, const int*, int, int, int*, float*, int*).
        unsafe { self.launch_params("rbee_argmax_final", (rows as u32, 1, 1), 256, 0, &mut params)? };
        Ok(2 + launches)
    }

    /// Captures the decode step of every batch bucket.
    pub(super) fn capture_all(&mut self) -> EngineResult<()> {
        for rows in self.buckets.clone() {
            self.capture(rows)?;
        }
        trace_vram("capturing the decode graphs");
        Ok(())
    }

    pub(super) fn capture(&mut self, rows: usize) -> EngineResult<()> {
        cu("bind", self.ctx.bind_to_thread())?;
        cu("sync", self.stream.synchronize())?;
        cu("capture", self.stream.begin_capture(sys::CUstreamCaptureMode::CU_STREAM_CAPTURE_MODE_THREAD_LOCAL))?;
        let enqueued = self.enqueue_step(rows);
        // End the capture whatever happened, or the stream stays unusable.
        let graph = cu("end capture", self.stream.end_capture(sys::CUgraphInstantiate_flags(0)));
        let kernels = enqueued?;
        let graph = graph?.ok_or_else(|| EngineError::internal("the captured decode step is empty"))?;
        cu("graph upload", graph.upload())?;
        if rows == 1 {
            self.kernels_per_step = kernels;
        }
        self.graphs.insert(rows, Graph(graph));
        Ok(())
    }

    /// The smallest captured bucket that holds `rows` rows (the largest when none does).
    pub(super) fn bucket_for(&self, rows: usize) -> usize {
        self.buckets.iter().copied().find(|&b| b >= rows).unwrap_or_else(|| self.max_bucket())
    }

    pub(super) fn max_bucket(&self) -> usize {
        self.buckets.last().copied().unwrap_or(1)
    }

    /// One batched step: each segment's `tokens` at positions `start..` of its own slot (whose
    /// cache must hold `0..start`); returns, per segment, the greedy token after its last token
    /// (where `greedy[i]`, picked on the GPU) or that token's logits.
    ///
    /// A prompt slice longer than GEMM_PREFILL_MIN takes the GEMM prefill by itself, as it would
    /// alone. Every other token is a row of one graph replay (several when the rows outnumber
    /// the largest bucket): the decoding streams' next tokens and short prompt slices side by
    /// side, each row with its own token, position and slot. All rows write their K/V (RoPE
    /// kernel) before any row attends, and a row attends to its slot's positions up to its own,
    /// so a prompt slice's rows are causal within a replay. The spare rows of a bucket repeat the
    /// last row: the same K/V into the same cell, their outputs unread. Each row's arithmetic is
    /// the same in every bucket (the kernels work per row and every graph has the same attention
    /// splits), so a stream batched gets bit for bit what it gets alone.
    pub fn step(&mut self, segments: &[Segment], greedy: &[bool]) -> EngineResult<Vec<StepOutput>> {
        for seg in segments {
            let n = seg.tokens.len();
            if n == 0 || seg.start + n > self.capacity || seg.slot >= self.slots {
                return Err(EngineError::internal(format!(
                    "forward of {n} tokens at {} of slot {} does not fit {} slots of {} positions",
                    seg.start, seg.slot, self.slots, self.capacity
                )));
            }
            if let Some(bad) = seg.tokens.iter().find(|&&t| t as usize >= self.config.n_vocab) {
                return Err(EngineError::invalid_request(format!("token {bad} is outside the vocabulary of {}", self.config.n_vocab)));
            }
        }
        cu("bind", self.ctx.bind_to_thread())?;
        let mut outputs: Vec<Option<StepOutput>> = segments.iter().map(|_| None).collect();
        // [token, position, slot] per row, and (row, segment) of each segment's last row.
        let mut rows: Vec<[i32; 3]> = Vec::new();
        let mut wanted: Vec<(usize, usize)> = Vec::new();
        for (i, seg) in segments.iter().enumerate() {
            if prefill::use_gemm_prefill(seg.tokens.len()) && self.prefill.is_some() {
                self.prefill(seg.tokens, seg.start, seg.slot)?;
                let mut out = self.read_rows(1, &[(0, greedy.get(i).copied().unwrap_or(false))])?;
                outputs[i] = out.pop();
                continue;
            }
            rows.extend(seg.tokens.iter().enumerate().map(|(j, &t)| [t as i32, (seg.start + j) as i32, seg.slot as i32]));
            wanted.push((rows.len() - 1, i));
        }
        let max = self.max_bucket();
        let mut next = 0;
        for (c, chunk) in rows.chunks(max).enumerate() {
            let first = c * max;
            let bucket = self.bucket_for(chunk.len());
            let last = chunk[chunk.len() - 1];
            let mut input = vec![0i32; 3 * bucket];
            for r in 0..bucket {
                let row = chunk.get(r).copied().unwrap_or(last);
                for (field, value) in row.into_iter().enumerate() {
                    input[field * bucket + r] = value;
                }
            }
            self.input_in(bucket, &input)?;
            if !self.graphs.contains_key(&bucket) {
                return Err(EngineError::internal(format!("no decode graph for batch {bucket}")));
            }
            if self.tp.is_some() {
                self.tp_send_launch(bucket, &input)?;
            }
            let graph = self.graphs.get(&bucket).ok_or_else(|| EngineError::internal(format!("no decode graph for batch {bucket}")))?;
            cu("graph launch", graph.0.launch())?;
            let mut here = Vec::new();
            while next < wanted.len() && wanted[next].0 < first + chunk.len() {
                let (row, i) = wanted[next];
                here.push((row - first, i));
                next += 1;
            }
            if here.is_empty() {
                continue;
            }
            let want: Vec<(usize, bool)> = here.iter().map(|&(row, i)| (row, greedy.get(i).copied().unwrap_or(false))).collect();
            for ((_, i), out) in here.iter().zip(self.read_rows(chunk.len(), &want)?) {
                outputs[*i] = Some(out);
            }
        }
        outputs.into_iter().map(|o| o.ok_or_else(|| EngineError::internal("a segment of the step has no output"))).collect()
    }

    /// A replay's input into the decode buffers: `input` holds each of `bucket` rows' token, then
    /// each row's position, then each row's slot. Pageable copies: staged when the call returns,
    /// ordered before the replay.
    pub(super) fn input_in(&self, bucket: usize, input: &[i32]) -> EngineResult<()> {
        let (b, stream) = (&self.buffers, self.stream.cu_stream());
        cu("tokens in", unsafe { result::memcpy_htod_async(b.tokens.ptr, &input[..bucket], stream) })?;
        cu("positions in", unsafe { result::memcpy_htod_async(b.pos.ptr, &input[bucket..2 * bucket], stream) })?;
        cu("slots in", unsafe { result::memcpy_htod_async(b.slot.ptr, &input[2 * bucket..3 * bucket], stream) })
    }

    /// Waits for the step and reads each wanted row's greedy token or logits (of `rows` rows
    /// the last replay left).
    pub(super) fn read_rows(&self, rows: usize, want: &[(usize, bool)]) -> EngineResult<Vec<StepOutput>> {
        let stream = self.stream.cu_stream();
        let vocab = self.config.n_vocab;
        let mut ids = vec![0i32; rows];
        cu("tokens out", unsafe { result::memcpy_dtoh_async(&mut ids[..], self.buffers.tokens.ptr, stream) })?;
        let mut logits: Vec<Option<Vec<f32>>> = Vec::with_capacity(want.len());
        for &(row, greedy) in want {
            logits.push(if greedy {
                None
            } else {
                let mut values = vec![0f32; vocab];
                if self.tp.is_some() {
                    self.tp_logits_out(row, &mut values)?;
                } else {
                    cu("logits out", unsafe { result::memcpy_dtoh_async(&mut values[..], self.buffers.logits.ptr + (4 * vocab * row) as u64, stream) })?;
                }
                Some(values)
            });
        }
        let mut tp_error = [0i32];
        if let Some(tp) = &self.tp {
            cu("error word out", unsafe { result::memcpy_dtoh_async(&mut tp_error[..], tp.error_word(), stream) })?;
        }
        cu("sync", self.stream.synchronize())?;
        self.tp_check(tp_error[0])?;
        want.iter()
            .zip(logits)
            .map(|(&(row, _), logits)| match logits {
                Some(values) => Ok(StepOutput::Logits(values)),
                None => u32::try_from(ids[row])
                    .map(StepOutput::Token)
                    .map_err(|_| EngineError::internal(format!("the decode step picked token {} (non-finite logits?)", ids[row]))),
            })
            .collect()
    }

    /// The logits of the last of `tokens` at positions `start..` of slot 0 (f32, the vocabulary wide).
    pub fn forward(&mut self, tokens: &[u32], start: usize) -> EngineResult<Vec<f32>> {
        match self.step(&[Segment { slot: 0, tokens, start }], &[false])?.pop() {
            Some(StepOutput::Logits(logits)) => Ok(logits),
            _ => Err(EngineError::internal("the step gave no logits")),
        }
    }

    /// The greedy next token after `tokens` in slot 0 (argmax on the GPU: one id comes back, not the logits).
    pub fn forward_greedy(&mut self, tokens: &[u32], start: usize) -> EngineResult<u32> {
        match self.step(&[Segment { slot: 0, tokens, start }], &[true])?.pop() {
            Some(StepOutput::Token(token)) => Ok(token),
            _ => Err(EngineError::internal("the step gave no token")),
        }
    }
}
