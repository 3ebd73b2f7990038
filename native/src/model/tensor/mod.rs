//! The decoder built only from Candle tensor ops, so it runs on any Candle device (CUDA, Metal,
//! and the CPU, where it is tested against the ggml path). Same architectures, tensor names and
//! numerics choices as the CPU path (`super::Transformer`), computed in f32: quantized matrix
//! products through `QMatMul`, attention through batched matrix products over a KV cache that
//! lives on the device. A forward pass copies the token ids to the device and the last
//! position's logits back, nothing else.

pub mod attention;
pub mod kv_cache;
pub mod rope_table;
pub mod weights;

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_gemma;
#[cfg(test)]
pub(crate) mod tiny_gguf;

use std::io::{Read, Seek};

use candle_core::quantized::gguf_file::Content;
use candle_core::{DType, Device, Module, Tensor};

use super::config::{Activation, Config};
use super::rope::Rope;
use super::Loader;
use crate::error::{EngineError, EngineResult};
use attention::{HeadShape, KeySpan};
use kv_cache::LayerKvCache;
use rope_table::RopeTable;
use weights::{Embeddings, TensorLayer, TensorLinear};

pub struct TensorTransformer {
    pub config: Config,
    device: Device,
    embeddings: Embeddings,
    /// None: tied to the token embeddings.
    output: Option<TensorLinear>,
    output_norm: Tensor,
    layers: Vec<TensorLayer>,
    /// The global rope, then the sliding-window layers' own (another base) when there are any.
    ropes: Vec<RopeTable>,
    /// One KV cache per slot, each `[layer]`.
    caches: Vec<Vec<LayerKvCache>>,
    capacity: usize,
    /// Bytes of weights held (quantized, as loaded).
    pub weight_bytes: usize,
}

/// One batch's view of the keys for one kind of layer (global or sliding-window).
struct LayerKeys {
    span: KeySpan,
    mask: Option<Tensor>,
}

fn rms_norm(x: &Tensor, weight: &Tensor, eps: f32) -> EngineResult<Tensor> {
    Ok(candle_nn::ops::rms_norm(x, weight, eps)?)
}

fn rms_norm_opt(x: Tensor, weight: Option<&Tensor>, eps: f32) -> EngineResult<Tensor> {
    match weight {
        Some(w) => rms_norm(&x, w, eps),
        None => Ok(x),
    }
}

impl TensorTransformer {
    pub fn load<R: Read + Seek>(
        config: Config,
        content: &Content,
        reader: &mut R,
        device: &Device,
        context_size: usize,
        slots: usize,
        progress: &mut dyn FnMut(f64),
    ) -> EngineResult<Self> {
        let mut model = Self::load_with_kv_dtype(config, content, reader, device, context_size, kv_cache::kv_dtype_from_env()?, progress)?;
        model.add_slots(slots)?;
        Ok(model)
    }

    /// Grows the model to `slots` KV caches (one more per stream it may hold at once).
    pub fn add_slots(&mut self, slots: usize) -> EngineResult<()> {
        let dtype = self.caches[0][0].dtype();
        while self.caches.len() < slots {
            let cache = (0..self.config.n_layer)
                .map(|_| LayerKvCache::new(self.config.n_head_kv, self.capacity, self.config.head_dim, dtype, &self.device))
                .collect::<EngineResult<Vec<_>>>()?;
            self.caches.push(cache);
        }
        Ok(())
    }

    pub fn slots(&self) -> usize {
        self.caches.len()
    }

    /// The segments one after another, each in its own slot's cache: streams interleave step by
    /// step; reading each weight once for the whole batch is the ggml path's (and later work here).
    pub fn step(&mut self, segments: &[super::Segment]) -> EngineResult<Vec<Vec<f32>>> {
        super::check_segments(segments, self.caches.len(), self.capacity)?;
        segments.iter().map(|seg| self.forward_in(seg.slot, seg.tokens, seg.start)).collect()
    }

    /// `load` with the KV cache's element type given rather than read from the environment.
    pub fn load_with_kv_dtype<R: Read + Seek>(
        config: Config,
        content: &Content,
        reader: &mut R,
        device: &Device,
        context_size: usize,
        kv_dtype: DType,
        progress: &mut dyn FnMut(f64),
    ) -> EngineResult<Self> {
        let total = content.tensor_infos.len();
        let mut loader = Loader { content, reader, device, bytes: 0, loaded: 0, total, progress };
        let embeddings = Embeddings::load(&mut loader)?;
        let output = if loader.has("output.weight") { Some(weights::linear(&mut loader, "output")?) } else { None };
        let output_norm = weights::device_vector(&mut loader, "output_norm.weight")?;
        let freq_factors = loader.optional_vector("rope_freqs.weight")?;
        let capacity = context_size.max(1);
        let global = Rope::new(config.n_rot, config.rope_base, config.rope_freq_scale, freq_factors.clone(), config.rope_neox);
        let mut ropes = vec![RopeTable::new(&global, capacity, device)?];
        if config.swa_window.is_some() {
            let local = Rope::new(config.n_rot, config.rope_base_swa, 1.0, freq_factors, config.rope_neox);
            ropes.push(RopeTable::new(&local, capacity, device)?);
        }
        let mut layers = Vec::with_capacity(config.n_layer);
        for il in 0..config.n_layer {
            let layer = weights::layer(&mut loader, il)?;
            config.check_attention_shape(il, layer.wq.out_features, layer.wk.out_features)?;
            layers.push(layer);
        }
        let weight_bytes = loader.bytes;
        let cache =
            (0..config.n_layer).map(|_| LayerKvCache::new(config.n_head_kv, capacity, config.head_dim, kv_dtype, device)).collect::<EngineResult<Vec<_>>>()?;
        Ok(Self { config, device: device.clone(), embeddings, output, output_norm, layers, ropes, caches: vec![cache], capacity, weight_bytes })
    }

    pub fn context_size(&self) -> usize {
        self.capacity
    }

    pub fn device(&self) -> &Device {
        &self.device
    }

    pub fn cache_bytes(&self) -> usize {
        self.caches.iter().flatten().map(LayerKvCache::bytes).sum()
    }

    fn layer_keys(&self, start: usize, tokens: usize, window: Option<usize>) -> EngineResult<LayerKeys> {
        let span = KeySpan::new(start, tokens, window);
        let mask = attention::mask(start, tokens, span, window, &self.device)?;
        Ok(LayerKeys { span, mask })
    }

    /// Runs `tokens` at positions `start..` of slot 0 (the cache must hold `0..start`) and
    /// returns the logits of the last one.
    pub fn forward(&mut self, tokens: &[u32], start: usize) -> EngineResult<Vec<f32>> {
        self.forward_in(0, tokens, start)
    }

    fn forward_in(&mut self, slot: usize, tokens: &[u32], start: usize) -> EngineResult<Vec<f32>> {
        let cfg = &self.config;
        let n = tokens.len();
        if n == 0 || start + n > self.capacity {
            return Err(EngineError::internal(format!("forward of {n} tokens at {start} does not fit {} positions", self.capacity)));
        }
        let (n_head, n_head_kv, hd) = (cfg.n_head, cfg.n_head_kv, cfg.head_dim);
        let shape = HeadShape { n_head, n_head_kv, head_dim: hd };
        // Gemma 3 scales Q after RoPE and the scores by 1; the others scale the scores. Either
        // way one scale of Q gives the same products.
        let q_factor = (cfg.q_scale.unwrap_or(1.0) * cfg.kq_scale) as f64;
        let global_keys = self.layer_keys(start, n, None)?;
        let window_keys = match cfg.swa_window {
            Some(window) => Some(self.layer_keys(start, n, Some(window))?),
            None => None,
        };

        let mut x = self.embeddings.lookup(tokens, &self.device)?;
        if let Some(scale) = cfg.embed_scale {
            x = x.affine(scale as f64, 0.0)?;
        }
        for (il, layer) in self.layers.iter().enumerate() {
            let windowed = cfg.is_swa(il);
            let keys = if windowed { window_keys.as_ref().unwrap_or(&global_keys) } else { &global_keys };
            let h = rms_norm(&x, &layer.attn_norm, cfg.eps)?;
            let q = layer.wq.forward(&h)?.reshape((n, n_head, hd))?;
            let k = layer.wk.forward(&h)?.reshape((n, n_head_kv, hd))?;
            let v = layer.wv.forward(&h)?.reshape((n, n_head_kv, hd))?;
            let q = rms_norm_opt(q, layer.q_norm.as_ref(), cfg.eps)?;
            let k = rms_norm_opt(k, layer.k_norm.as_ref(), cfg.eps)?;
            // Heads first, as RoPE, the cache and the attention products want them.
            let q = q.transpose(0, 1)?.contiguous()?.unsqueeze(0)?;
            let k = k.transpose(0, 1)?.contiguous()?.unsqueeze(0)?;
            let v = v.transpose(0, 1)?.contiguous()?;
            let rope = &self.ropes[usize::from(windowed)];
            let q = rope.apply(&q, start)?.affine(q_factor, 0.0)?;
            let k = rope.apply(&k, start)?.squeeze(0)?;
            let cache = &self.caches[slot][il];
            cache.store(&k, &v, start)?;
            let (cached_k, cached_v) = cache.window(keys.span.first, keys.span.len)?;
            let attn = attention::attend(&q, &cached_k, &cached_v, keys.mask.as_ref(), shape)?;
            let o = rms_norm_opt(layer.wo.forward(&attn)?, layer.post_attn_norm.as_ref(), cfg.eps)?;
            let residual = (o + &x)?;

            let h = rms_norm(&residual, &layer.ffn_norm, cfg.eps)?;
            let gate = layer.gate.forward(&h)?;
            let up = layer.up.forward(&h)?;
            let act = match cfg.activation {
                Activation::Gelu => (gate.gelu()? * up)?,
                Activation::Silu => (gate.silu()? * up)?,
            };
            let f = rms_norm_opt(layer.down.forward(&act)?, layer.post_ffn_norm.as_ref(), cfg.eps)?;
            x = (f + residual)?;
        }

        let last = x.narrow(0, n - 1, 1)?;
        let h = rms_norm(&last, &self.output_norm, cfg.eps)?;
        let mut logits = match &self.output {
            Some(output) => output.forward(&h)?,
            None => self.embeddings.table.forward(&h)?,
        };
        if let Some(cap) = cfg.final_logit_softcap {
            logits = logits.affine(1.0 / cap as f64, 0.0)?.tanh()?.affine(cap as f64, 0.0)?;
        }
        Ok(logits.flatten_all()?.to_vec1::<f32>()?)
    }
}
