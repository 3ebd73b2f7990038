//! The decoder: Gemma 3, Llama, Qwen 2 and Qwen 3 GGUFs through one transformer loop, with the
//! quantized matrix multiplications done by Candle (`QMatMul`) and the rest written to follow
//! llama.cpp's CPU kernels (see `ggml_math`, `attention`, `rope`). The KV cache is allocated once
//! per slot (f16, `context_size` positions each) and written in place; a new request in a slot
//! just starts over at position 0.
//!
//! `step` runs several slots' tokens as one batch: every row-wise operation (the matrix
//! multiplications above all, so each weight is read once per step) runs over all the rows at
//! once, attention runs per slot against that slot's cache. The ggml kernels here give every row
//! the same arithmetic whatever the row count, so a stream's logits in a batch are bit-identical
//! to its logits alone; weights that go through Candle's own kernels (types without a ggml
//! kernel here) are multiplied per slot, since their arithmetic may change with the row count.
//!
//! This is the CPU path; `tensor` holds the same decoder built from Candle tensor ops for GPUs,
//! and `decoder` picks between the two.

pub mod attention;
pub mod config;
pub mod decoder;
pub mod graph;
pub mod q8_1;
pub mod qmatmul;
pub mod rope;
pub mod shard;
pub mod tensor;

use std::io::{Read, Seek};

use candle_core::quantized::{gguf_file::Content, QTensor};
use candle_core::Device;

use crate::error::{EngineError, EngineResult};
use crate::ggml_math;
use attention::{AttentionShape, LayerCache};
use config::{Activation, Config};
pub use decoder::Segment;
use qmatmul::QWeight;
use rope::Rope;

struct Linear {
    weight: QWeight,
    bias: Option<Vec<f32>>,
    out_features: usize,
}

struct Layer {
    attn_norm: Vec<f32>,
    wq: Linear,
    wk: Linear,
    wv: Linear,
    wo: Linear,
    q_norm: Option<Vec<f32>>,
    k_norm: Option<Vec<f32>>,
    post_attn_norm: Option<Vec<f32>>,
    ffn_norm: Vec<f32>,
    gate: Linear,
    up: Linear,
    down: Linear,
    post_ffn_norm: Option<Vec<f32>>,
    rope: usize,
}

pub struct Transformer {
    pub config: Config,
    device: Device,
    tok_embd: QWeight,
    /// None: tied to the token embeddings.
    output: Option<Linear>,
    output_norm: Vec<f32>,
    layers: Vec<Layer>,
    ropes: Vec<Rope>,
    /// One KV cache per slot, each `[layer]`.
    caches: Vec<Vec<LayerCache>>,
    capacity: usize,
    /// Bytes of weights held (quantized, as loaded).
    pub weight_bytes: usize,
}

struct Loader<'a, R: Read + Seek> {
    content: &'a Content,
    reader: &'a mut R,
    device: &'a Device,
    bytes: usize,
    loaded: usize,
    total: usize,
    progress: &'a mut dyn FnMut(f64),
}

impl<R: Read + Seek> Loader<'_, R> {
    fn qtensor(&mut self, name: &str) -> EngineResult<QTensor> {
        let device = self.device;
        self.qtensor_on(name, device)
    }

    fn qtensor_on(&mut self, name: &str, device: &Device) -> EngineResult<QTensor> {
        let tensor = self.content.tensor(self.reader, name, device).map_err(|e| EngineError::invalid_gguf(format!("tensor {name}: {e}")))?;
        self.bytes += tensor.storage_size_in_bytes();
        self.loaded += 1;
        (self.progress)(self.loaded as f64 / self.total.max(1) as f64);
        Ok(tensor)
    }

    fn has(&self, name: &str) -> bool {
        self.content.tensor_infos.contains_key(name)
    }

    /// A small tensor (a norm weight, a bias) as f32 values on the host: read straight into host
    /// memory whatever the model's device, since both forward paths start from these values.
    fn vector(&mut self, name: &str) -> EngineResult<Vec<f32>> {
        let tensor = self.qtensor_on(name, &Device::Cpu)?;
        let values = tensor.dequantize(&Device::Cpu)?.flatten_all()?.to_vec1::<f32>()?;
        Ok(values)
    }

    fn optional_vector(&mut self, name: &str) -> EngineResult<Option<Vec<f32>>> {
        if self.has(name) {
            self.vector(name).map(Some)
        } else {
            Ok(None)
        }
    }

    fn linear(&mut self, prefix: &str) -> EngineResult<Linear> {
        let tensor = self.qtensor(&format!("{prefix}.weight"))?;
        let out_features = tensor.shape().dims()[0];
        let weight = QWeight::new(tensor)?;
        let bias = self.optional_vector(&format!("{prefix}.bias"))?;
        Ok(Linear { weight, bias, out_features })
    }
}

impl Linear {
    /// x: (rows, in) row-major; returns (rows, out). `segments` are the row counts of the slots
    /// in a batched step: where the kernel's arithmetic could depend on the row count, each
    /// segment is multiplied on its own, so a batch gives every slot what it gets alone.
    fn forward(&self, x: Vec<f32>, rows: usize, segments: &[usize]) -> EngineResult<Vec<f32>> {
        let mut y = if segments.len() <= 1 || self.weight.row_exact() {
            self.weight.forward(&x, rows)?
        } else {
            let width = self.weight.in_features;
            let mut y = Vec::with_capacity(rows * self.out_features);
            let mut at = 0;
            for &n in segments {
                y.extend(self.weight.forward(&x[at * width..(at + n) * width], n)?);
                at += n;
            }
            y
        };
        if let Some(bias) = &self.bias {
            for row in y.chunks_mut(self.out_features) {
                for (v, b) in row.iter_mut().zip(bias) {
                    *v += *b;
                }
            }
        }
        Ok(y)
    }
}

fn norm_rows(x: &[f32], weight: &[f32], eps: f32, width: usize) -> Vec<f32> {
    let mut out = vec![0f32; x.len()];
    for (src, dst) in x.chunks(width).zip(out.chunks_mut(width)) {
        ggml_math::rms_norm(src, weight, eps, dst);
    }
    out
}

impl Transformer {
    pub fn load<R: Read + Seek>(
        config: Config,
        content: &Content,
        reader: &mut R,
        device: &Device,
        context_size: usize,
        slots: usize,
        progress: &mut dyn FnMut(f64),
    ) -> EngineResult<Self> {
        if !device.is_cpu() {
            return Err(EngineError::new(crate::error::ErrorCode::DeviceUnavailable, "the ggml forward path runs on the CPU only: GPUs take the tensor path"));
        }
        let total = content.tensor_infos.len();
        let mut loader = Loader { content, reader, device, bytes: 0, loaded: 0, total, progress };
        let tok_embd = QWeight::new(loader.qtensor("token_embd.weight")?)?;
        let output = if loader.has("output.weight") { Some(loader.linear("output")?) } else { None };
        let output_norm = loader.vector("output_norm.weight")?;
        let freq_factors = loader.optional_vector("rope_freqs.weight")?;
        let mut ropes = vec![Rope::new(config.n_rot, config.rope_base, config.rope_freq_scale, freq_factors.clone(), config.rope_neox)];
        if config.swa_window.is_some() {
            ropes.push(Rope::new(config.n_rot, config.rope_base_swa, 1.0, freq_factors, config.rope_neox));
        }
        let mut layers = Vec::with_capacity(config.n_layer);
        for il in 0..config.n_layer {
            let p = format!("blk.{il}");
            let layer = Layer {
                attn_norm: loader.vector(&format!("{p}.attn_norm.weight"))?,
                wq: loader.linear(&format!("{p}.attn_q"))?,
                wk: loader.linear(&format!("{p}.attn_k"))?,
                wv: loader.linear(&format!("{p}.attn_v"))?,
                wo: loader.linear(&format!("{p}.attn_output"))?,
                q_norm: loader.optional_vector(&format!("{p}.attn_q_norm.weight"))?,
                k_norm: loader.optional_vector(&format!("{p}.attn_k_norm.weight"))?,
                post_attn_norm: loader.optional_vector(&format!("{p}.post_attention_norm.weight"))?,
                ffn_norm: loader.vector(&format!("{p}.ffn_norm.weight"))?,
                gate: loader.linear(&format!("{p}.ffn_gate"))?,
                up: loader.linear(&format!("{p}.ffn_up"))?,
                down: loader.linear(&format!("{p}.ffn_down"))?,
                post_ffn_norm: loader.optional_vector(&format!("{p}.post_ffw_norm.weight"))?,
                rope: usize::from(config.is_swa(il)),
            };
            config.check_attention_shape(il, layer.wq.out_features, layer.wk.out_features)?;
            layers.push(layer);
        }
        let weight_bytes = loader.bytes;
        let capacity = context_size.max(1);
        let caches = (0..slots.max(1)).map(|_| (0..config.n_layer).map(|_| LayerCache::new(config.n_head_kv, capacity, config.head_dim)).collect()).collect();
        Ok(Self { config, device: device.clone(), tok_embd, output, output_norm, layers, ropes, caches, capacity, weight_bytes })
    }

    pub fn context_size(&self) -> usize {
        self.capacity
    }

    pub fn device(&self) -> &Device {
        &self.device
    }

    pub fn cache_bytes(&self) -> usize {
        self.caches.iter().flatten().map(|c| (c.k.len() + c.v.len()) * 2).sum()
    }

    /// Streams that can be in flight at once (one KV cache each).
    pub fn slots(&self) -> usize {
        self.caches.len()
    }

    /// Runs `tokens` at positions `start..` in slot 0 and returns the logits of the last one.
    pub fn forward(&mut self, tokens: &[u32], start: usize) -> EngineResult<Vec<f32>> {
        let mut logits = self.step(&[Segment { slot: 0, tokens, start }])?;
        Ok(logits.pop().unwrap_or_default())
    }

    /// One batched step: each segment's tokens run in its slot at positions `start..` (the
    /// slot's cache must hold `0..start`); returns the logits of each segment's last token, in
    /// segment order. The slots must be distinct.
    pub fn step(&mut self, segments: &[Segment]) -> EngineResult<Vec<Vec<f32>>> {
        let cfg = &self.config;
        check_segments(segments, self.caches.len(), self.capacity)?;
        let counts: Vec<usize> = segments.iter().map(|s| s.tokens.len()).collect();
        let n: usize = counts.iter().sum();
        let (d, hd) = (cfg.n_embd, cfg.head_dim);
        let tokens: Vec<u32> = segments.iter().flat_map(|s| s.tokens.iter().copied()).collect();
        let mut x = self.tok_embd.rows(&tokens)?;
        if let Some(scale) = cfg.embed_scale {
            for v in x.iter_mut() {
                *v *= scale;
            }
        }
        let threads = crate::engine::threads();
        let shape_full = AttentionShape { n_head: cfg.n_head, n_head_kv: cfg.n_head_kv, head_dim: hd, scale: cfg.kq_scale, window: None, threads };
        let (q_width, kv_width) = (cfg.n_head * hd, cfg.n_head_kv * hd);
        for (il, layer) in self.layers.iter().enumerate() {
            let h = norm_rows(&x, &layer.attn_norm, cfg.eps, d);
            let mut q = layer.wq.forward(h.clone(), n, &counts)?;
            let mut k = layer.wk.forward(h.clone(), n, &counts)?;
            let v = layer.wv.forward(h, n, &counts)?;
            if let Some(w) = &layer.q_norm {
                q = norm_rows(&q, w, cfg.eps, hd);
            }
            if let Some(w) = &layer.k_norm {
                k = norm_rows(&k, w, cfg.eps, hd);
            }
            let rope = &self.ropes[layer.rope];
            let mut row = 0;
            for seg in segments {
                let rows = seg.tokens.len();
                rope.apply(&mut q[row * q_width..(row + rows) * q_width], rows, cfg.n_head, hd, seg.start);
                rope.apply(&mut k[row * kv_width..(row + rows) * kv_width], rows, cfg.n_head_kv, hd, seg.start);
                row += rows;
            }
            if let Some(scale) = cfg.q_scale {
                for v in q.iter_mut() {
                    *v *= scale;
                }
            }
            let shape = AttentionShape { window: if cfg.is_swa(il) { cfg.swa_window } else { None }, ..shape_full };
            let mut attn = vec![0f32; n * q_width];
            let mut row = 0;
            for seg in segments {
                let rows = seg.tokens.len();
                let cache = &mut self.caches[seg.slot][il];
                cache.store(&k[row * kv_width..(row + rows) * kv_width], &v[row * kv_width..(row + rows) * kv_width], rows, &shape, self.capacity, seg.start);
                attention::attend(
                    &q[row * q_width..(row + rows) * q_width],
                    cache,
                    self.capacity,
                    &shape,
                    seg.start,
                    rows,
                    &mut attn[row * q_width..(row + rows) * q_width],
                );
                row += rows;
            }
            let mut o = layer.wo.forward(attn, n, &counts)?;
            if let Some(w) = &layer.post_attn_norm {
                o = norm_rows(&o, w, cfg.eps, d);
            }
            for (a, b) in o.iter_mut().zip(&x) {
                *a += *b;
            }
            let residual = o;
            let h = norm_rows(&residual, &layer.ffn_norm, cfg.eps, d);
            let gate = layer.gate.forward(h.clone(), n, &counts)?;
            let up = layer.up.forward(h, n, &counts)?;
            let mut act = vec![0f32; gate.len()];
            match cfg.activation {
                Activation::Gelu => ggml_math::geglu(&gate, &up, &mut act),
                Activation::Silu => ggml_math::swiglu(&gate, &up, &mut act),
            }
            let mut f = layer.down.forward(act, n, &counts)?;
            if let Some(w) = &layer.post_ffn_norm {
                f = norm_rows(&f, w, cfg.eps, d);
            }
            for (a, b) in f.iter_mut().zip(&residual) {
                *a += *b;
            }
            x = f;
        }
        // Each segment's last row only: the output head is the largest matrix of a small model.
        let mut last = Vec::with_capacity(segments.len() * d);
        let mut end = 0;
        for &rows in &counts {
            end += rows;
            last.extend_from_slice(&x[(end - 1) * d..end * d]);
        }
        let h = norm_rows(&last, &self.output_norm, cfg.eps, d);
        let heads = vec![1; segments.len()];
        let mut logits = match &self.output {
            Some(output) => output.forward(h, segments.len(), &heads)?,
            None if segments.len() <= 1 || self.tok_embd.row_exact() => self.tok_embd.forward(&h, segments.len())?,
            None => {
                let mut all = Vec::new();
                for row in h.chunks(d) {
                    all.extend(self.tok_embd.forward(row, 1)?);
                }
                all
            }
        };
        if let Some(cap) = cfg.final_logit_softcap {
            for v in logits.iter_mut() {
                *v = (*v * (1.0 / cap)).tanh() * cap;
            }
        }
        let vocab = logits.len() / segments.len();
        Ok(logits.chunks(vocab).map(<[f32]>::to_vec).collect())
    }
}

/// Segments of one step: each fits its slot's context, and no slot appears twice (its cache
/// would be written by two segments of the same step).
pub(crate) fn check_segments(segments: &[Segment], slots: usize, capacity: usize) -> EngineResult<()> {
    if segments.is_empty() {
        return Err(EngineError::internal("a step without segments"));
    }
    for (index, seg) in segments.iter().enumerate() {
        let n = seg.tokens.len();
        if n == 0 || seg.start + n > capacity {
            return Err(EngineError::internal(format!("forward of {n} tokens at {} does not fit {capacity} positions", seg.start)));
        }
        if seg.slot >= slots {
            return Err(EngineError::internal(format!("slot {} of a model with {slots} slots", seg.slot)));
        }
        if segments[..index].iter().any(|other| other.slot == seg.slot) {
            return Err(EngineError::internal(format!("slot {} twice in one step", seg.slot)));
        }
    }
    Ok(())
}
