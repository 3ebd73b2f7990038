//! The ggml forward pass (model/mod.rs), one rank's slice of it. Every step mirrors the plain
//! `Transformer::forward` operation for operation; where a rank holds only part of a matrix it
//! computes that part, and two exchanges per layer (after O and after down) plus one for the
//! embeddings and one for the logits put the parts together (see `shard`'s exactness note).

use std::ops::Range;

use candle_core::quantized::gguf_file::Content;

use crate::error::{EngineError, EngineResult};
use crate::ggml_math;
use crate::model::attention::{self, AttentionShape, LayerCache};
use crate::model::config::{Activation, Config};
use crate::model::qmatmul::QWeight;
use crate::model::rope::Rope;

use super::comm::{sum_in_rank_order, Communicator, Step};
use super::plan::{share, ShardPlan};
use super::source::SlicedGguf;

/// Output rows of a matrix (column-parallel), with the same rows of its bias.
struct ColLinear {
    weight: QWeight,
    bias: Option<Vec<f32>>,
    out_features: usize,
}

impl ColLinear {
    fn load(src: &mut SlicedGguf, prefix: &str, rows: Range<usize>) -> EngineResult<Self> {
        let name = format!("{prefix}.weight");
        let full = src.out_features(&name)?;
        let weight = QWeight::slice_of(src.rows(&name, rows.clone())?, full)?;
        let bias = src.optional_vector(&format!("{prefix}.bias"))?.map(|b| b[rows.clone()].to_vec());
        Ok(Self { weight, bias, out_features: rows.len() })
    }

    fn forward(&self, x: &[f32], rows: usize) -> EngineResult<Vec<f32>> {
        let mut y = self.weight.forward(x, rows)?;
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

/// Input columns of a matrix (row-parallel): one block per rank, or, in a single process that
/// reproduces a group, the group's blocks side by side.
struct RowLinear {
    parts: Vec<QWeight>,
    /// The local input columns of each part.
    cols: Vec<Range<usize>>,
    in_local: usize,
    bias: Option<Vec<f32>>,
}

impl RowLinear {
    fn load(src: &mut SlicedGguf, prefix: &str, cols: Range<usize>, blocks: usize) -> EngineResult<Self> {
        let name = format!("{prefix}.weight");
        let full = src.out_features(&name)?;
        let mut parts = Vec::with_capacity(blocks);
        let mut local = Vec::with_capacity(blocks);
        for b in 0..blocks {
            let part = share(cols.len(), b, blocks);
            let global = cols.start + part.start..cols.start + part.end;
            parts.push(QWeight::slice_of(src.columns(&name, global)?, full)?);
            local.push(part);
        }
        let bias = src.optional_vector(&format!("{prefix}.bias"))?;
        Ok(Self { parts, cols: local, in_local: cols.len(), bias })
    }

    /// Each part's partial product over its own columns of `x` (rows, in_local).
    fn partials(&self, x: &[f32], rows: usize) -> EngineResult<Vec<Vec<f32>>> {
        if self.parts.len() == 1 {
            return Ok(vec![self.parts[0].forward(x, rows)?]);
        }
        self.parts
            .iter()
            .zip(&self.cols)
            .map(|(w, cols)| {
                let mut sub = Vec::with_capacity(rows * cols.len());
                for r in 0..rows {
                    sub.extend_from_slice(&x[r * self.in_local + cols.start..r * self.in_local + cols.end]);
                }
                w.forward(&sub, rows)
            })
            .collect()
    }
}

struct ShardLayer {
    attn_norm: Vec<f32>,
    wq: ColLinear,
    wk: ColLinear,
    wv: ColLinear,
    wo: RowLinear,
    q_norm: Option<Vec<f32>>,
    k_norm: Option<Vec<f32>>,
    post_attn_norm: Option<Vec<f32>>,
    ffn_norm: Vec<f32>,
    gate: ColLinear,
    up: ColLinear,
    down: RowLinear,
    post_ffn_norm: Option<Vec<f32>>,
    rope: usize,
}

/// How a process takes part: one rank of a group (with its communicator), or a single process
/// computing the whole model with its row-parallel matrices in `blocks` column blocks.
pub enum Role {
    /// Rank `rank` of `world`; its communicator is attached once the group has joined.
    Rank {
        rank: usize,
        world: usize,
    },
    Single {
        blocks: usize,
    },
}

pub struct ShardedTransformer {
    pub config: Config,
    pub plan: ShardPlan,
    comm: Option<Communicator>,
    tok_embd: QWeight,
    output: Option<ColLinear>,
    output_norm: Vec<f32>,
    layers: Vec<ShardLayer>,
    ropes: Vec<Rope>,
    cache: Vec<LayerCache>,
    capacity: usize,
    pub weight_bytes: usize,
}

fn norm_rows(x: &[f32], weight: &[f32], eps: f32, width: usize) -> Vec<f32> {
    let mut out = vec![0f32; x.len()];
    for (src, dst) in x.chunks(width).zip(out.chunks_mut(width)) {
        ggml_math::rms_norm(src, weight, eps, dst);
    }
    out
}

/// What every member of a group must agree on: the model's shape and tensors, the layout, and
/// the engine every rank runs (`engine`: launch.rs's GGML, or the graph path and its streams).
pub fn fingerprint(config: &Config, content: &Content, world: usize, context_size: usize, engine: &str) -> u64 {
    let mut names: Vec<_> = content.tensor_infos.iter().map(|(n, i)| format!("{n}:{:?}:{:?}:{}", i.shape.dims(), i.ggml_dtype, i.offset)).collect();
    names.sort();
    let text = format!("{engine}|{config:?}|{world}|{context_size}|{}", names.join(","));
    // FNV-1a: a checksum against a wrong file, not a defence against anyone.
    text.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ b as u64).wrapping_mul(0x100_0000_01b3))
}

impl ShardedTransformer {
    pub fn load(config: Config, src: &mut SlicedGguf, role: Role, context_size: usize, progress: &mut dyn FnMut(f64)) -> EngineResult<Self> {
        let (rank, world, blocks) = match role {
            Role::Rank { rank, world } => (rank, world, 1),
            Role::Single { blocks } => (0, 1, blocks.max(1)),
        };
        let plan = ShardPlan::new(&config, &src.content.tensor_infos, rank, world)?;
        if blocks > 1 {
            // The group this process reproduces must itself be a valid split.
            ShardPlan::new(&config, &src.content.tensor_infos, 0, blocks)?;
        }
        let hd = config.head_dim;
        let q_rows = plan.heads.start * hd..plan.heads.end * hd;
        let kv_rows = plan.kv_heads.start * hd..plan.kv_heads.end * hd;
        let o_cols = q_rows.clone();
        let tok_embd = QWeight::slice_of(src.rows("token_embd.weight", plan.vocab.clone())?, config.n_vocab)?;
        let output = if src.has("output.weight") { Some(ColLinear::load(src, "output", plan.vocab.clone())?) } else { None };
        let output_norm = src.vector("output_norm.weight")?;
        let freq_factors = src.optional_vector("rope_freqs.weight")?;
        let mut ropes = vec![Rope::new(config.n_rot, config.rope_base, config.rope_freq_scale, freq_factors.clone(), config.rope_neox)];
        if config.swa_window.is_some() {
            ropes.push(Rope::new(config.n_rot, config.rope_base_swa, 1.0, freq_factors, config.rope_neox));
        }
        let mut layers = Vec::with_capacity(config.n_layer);
        for il in 0..config.n_layer {
            let p = format!("blk.{il}");
            config.check_attention_shape(il, src.out_features(&format!("{p}.attn_q.weight"))?, src.out_features(&format!("{p}.attn_k.weight"))?)?;
            layers.push(ShardLayer {
                attn_norm: src.vector(&format!("{p}.attn_norm.weight"))?,
                wq: ColLinear::load(src, &format!("{p}.attn_q"), q_rows.clone())?,
                wk: ColLinear::load(src, &format!("{p}.attn_k"), kv_rows.clone())?,
                wv: ColLinear::load(src, &format!("{p}.attn_v"), kv_rows.clone())?,
                wo: RowLinear::load(src, &format!("{p}.attn_output"), o_cols.clone(), blocks)?,
                q_norm: src.optional_vector(&format!("{p}.attn_q_norm.weight"))?,
                k_norm: src.optional_vector(&format!("{p}.attn_k_norm.weight"))?,
                post_attn_norm: src.optional_vector(&format!("{p}.post_attention_norm.weight"))?,
                ffn_norm: src.vector(&format!("{p}.ffn_norm.weight"))?,
                gate: ColLinear::load(src, &format!("{p}.ffn_gate"), plan.ff.clone())?,
                up: ColLinear::load(src, &format!("{p}.ffn_up"), plan.ff.clone())?,
                down: RowLinear::load(src, &format!("{p}.ffn_down"), plan.ff.clone(), blocks)?,
                post_ffn_norm: src.optional_vector(&format!("{p}.post_ffw_norm.weight"))?,
                rope: usize::from(config.is_swa(il)),
            });
            progress((il + 1) as f64 / config.n_layer as f64);
        }
        let capacity = context_size.max(1);
        let cache = (0..config.n_layer).map(|_| LayerCache::new(plan.kv_heads.len(), capacity, hd)).collect();
        Ok(Self { config, plan, comm: None, tok_embd, output, output_norm, layers, ropes, cache, capacity, weight_bytes: src.copied })
    }

    /// Joins the group: from here on every step exchanges activations through `comm`.
    pub fn attach(&mut self, comm: Communicator) -> EngineResult<()> {
        if comm.rank != self.plan.rank || comm.world != self.plan.world {
            return Err(EngineError::internal(format!(
                "rank {} of {} given the link of rank {} of {}",
                self.plan.rank, self.plan.world, comm.rank, comm.world
            )));
        }
        self.comm = Some(comm);
        Ok(())
    }

    pub fn context_size(&self) -> usize {
        self.capacity
    }

    pub fn cache_bytes(&self) -> usize {
        self.cache.iter().map(|c| (c.k.len() + c.v.len()) * 2).sum()
    }

    /// A shard's life: runs the coordinator's steps until it closes the group (Ok) or the group
    /// fails (Err).
    pub fn serve(&mut self) -> EngineResult<()> {
        loop {
            let step = match self.comm.as_mut() {
                Some(comm) if comm.rank != 0 => comm.receive_step()?,
                _ => return Err(EngineError::internal("only a shard serves steps")),
            };
            match step {
                Some(step) => {
                    self.step(&step.tokens, step.start)?;
                }
                None => return Ok(()),
            }
        }
    }

    /// Rank 0 (or a single process): runs `tokens` at `start..` on every rank and returns the
    /// logits of the last one, as `Transformer::forward`.
    pub fn forward(&mut self, tokens: &[u32], start: usize) -> EngineResult<Vec<f32>> {
        if self.plan.world > 1 && self.comm.is_none() {
            return Err(EngineError::internal("the tensor-parallel group has not joined"));
        }
        if let Some(comm) = self.comm.as_mut() {
            if comm.rank != 0 {
                return Err(EngineError::internal("a shard runs the coordinator's steps, not its own"));
            }
            if tokens.is_empty() || start + tokens.len() > self.capacity {
                return Err(EngineError::internal(format!("forward of {} tokens at {start} does not fit {} positions", tokens.len(), self.capacity)));
            }
            if let Some(bad) = tokens.iter().find(|t| **t as usize >= self.config.n_vocab) {
                return Err(EngineError::invalid_request(format!("token {bad} is outside the vocabulary of {}", self.config.n_vocab)));
            }
            comm.send_step(&Step { tokens: tokens.to_vec(), start })?;
        }
        self.step(tokens, start)?.ok_or_else(|| EngineError::internal("rank 0 got no logits"))
    }

    fn all_gather(&mut self, data: &[f32]) -> EngineResult<Vec<Vec<f32>>> {
        match self.comm.as_mut() {
            Some(comm) => comm.all_gather(data),
            None => Ok(vec![data.to_vec()]),
        }
    }

    /// The row-parallel sum: this process's parts, or every rank's, added in rank order.
    fn reduce(&mut self, parts: Vec<Vec<f32>>) -> EngineResult<Vec<f32>> {
        if self.comm.is_none() {
            return Ok(sum_in_rank_order(&parts));
        }
        let gathered = self.all_gather(&parts[0])?;
        Ok(sum_in_rank_order(&gathered))
    }

    /// The token embeddings: each rank looks up the ids in its vocabulary rows, and every rank
    /// then takes each row from its owner (copies, so exact).
    fn embed(&mut self, tokens: &[u32]) -> EngineResult<Vec<f32>> {
        let d = self.config.n_embd;
        let vocab = self.plan.vocab.clone();
        if self.comm.is_none() {
            return self.tok_embd.rows(tokens);
        }
        let mine: Vec<u32> = tokens.iter().filter(|t| vocab.contains(&(**t as usize))).map(|t| *t - vocab.start as u32).collect();
        let local = if mine.is_empty() { Vec::new() } else { self.tok_embd.rows(&mine)? };
        let parts = self.all_gather(&local)?;
        let world = self.plan.world;
        let mut cursor = vec![0usize; world];
        let mut x = Vec::with_capacity(tokens.len() * d);
        for t in tokens {
            let owner = ShardPlan::vocab_owner(self.config.n_vocab, world, *t as usize);
            let at = cursor[owner];
            let row = parts[owner].get(at..at + d).ok_or_else(|| EngineError::internal(format!("rank {owner} sent no embedding for token {t}")))?;
            x.extend_from_slice(row);
            cursor[owner] += d;
        }
        Ok(x)
    }

    /// One step on this rank; the logits on rank 0 (or a single process), None on a shard.
    fn step(&mut self, tokens: &[u32], start: usize) -> EngineResult<Option<Vec<f32>>> {
        let n = tokens.len();
        if n == 0 || start + n > self.capacity {
            return Err(EngineError::internal(format!("forward of {n} tokens at {start} does not fit {} positions", self.capacity)));
        }
        let (d, hd, eps) = (self.config.n_embd, self.config.head_dim, self.config.eps);
        let mut x = self.embed(tokens)?;
        if let Some(scale) = self.config.embed_scale {
            for v in x.iter_mut() {
                *v *= scale;
            }
        }
        let threads = crate::engine::threads();
        let (n_head, n_head_kv) = (self.plan.heads.len(), self.plan.kv_heads.len());
        let shape_full = AttentionShape { n_head, n_head_kv, head_dim: hd, scale: self.config.kq_scale, window: None, threads };
        for il in 0..self.layers.len() {
            let layer = &self.layers[il];
            let cfg = &self.config;
            let h = norm_rows(&x, &layer.attn_norm, eps, d);
            let mut q = layer.wq.forward(&h, n)?;
            let mut k = layer.wk.forward(&h, n)?;
            let v = layer.wv.forward(&h, n)?;
            if let Some(w) = &layer.q_norm {
                q = norm_rows(&q, w, eps, hd);
            }
            if let Some(w) = &layer.k_norm {
                k = norm_rows(&k, w, eps, hd);
            }
            let rope = &self.ropes[layer.rope];
            rope.apply(&mut q, n, n_head, hd, start);
            rope.apply(&mut k, n, n_head_kv, hd, start);
            if let Some(scale) = cfg.q_scale {
                for v in q.iter_mut() {
                    *v *= scale;
                }
            }
            let shape = AttentionShape { window: if cfg.is_swa(il) { cfg.swa_window } else { None }, ..shape_full };
            self.cache[il].store(&k, &v, n, &shape, self.capacity, start);
            let mut attn = vec![0f32; n * n_head * hd];
            attention::attend(&q, &self.cache[il], self.capacity, &shape, start, n, &mut attn);
            let parts = layer.wo.partials(&attn, n)?;
            let mut o = self.reduce(parts)?;
            let layer = &self.layers[il];
            if let Some(bias) = &layer.wo.bias {
                for row in o.chunks_mut(d) {
                    for (v, b) in row.iter_mut().zip(bias) {
                        *v += *b;
                    }
                }
            }
            if let Some(w) = &layer.post_attn_norm {
                o = norm_rows(&o, w, eps, d);
            }
            for (a, b) in o.iter_mut().zip(&x) {
                *a += *b;
            }
            let residual = o;
            let h = norm_rows(&residual, &layer.ffn_norm, eps, d);
            let gate = layer.gate.forward(&h, n)?;
            let up = layer.up.forward(&h, n)?;
            let mut act = vec![0f32; gate.len()];
            match self.config.activation {
                Activation::Gelu => ggml_math::geglu(&gate, &up, &mut act),
                Activation::Silu => ggml_math::swiglu(&gate, &up, &mut act),
            }
            let parts = layer.down.partials(&act, n)?;
            let mut f = self.reduce(parts)?;
            let layer = &self.layers[il];
            if let Some(bias) = &layer.down.bias {
                for row in f.chunks_mut(d) {
                    for (v, b) in row.iter_mut().zip(bias) {
                        *v += *b;
                    }
                }
            }
            if let Some(w) = &layer.post_ffn_norm {
                f = norm_rows(&f, w, eps, d);
            }
            for (a, b) in f.iter_mut().zip(&residual) {
                *a += *b;
            }
            x = f;
        }
        let last = &x[(n - 1) * d..n * d];
        let h = norm_rows(last, &self.output_norm, eps, d);
        let mut logits = match &self.output {
            Some(output) => output.forward(&h, 1)?,
            None => self.tok_embd.forward(&h, 1)?,
        };
        if let Some(cap) = self.config.final_logit_softcap {
            for v in logits.iter_mut() {
                *v = (*v * (1.0 / cap)).tanh() * cap;
            }
        }
        match self.comm.as_mut() {
            None => Ok(Some(logits)),
            Some(comm) => Ok(comm.gather(&logits)?.map(|parts| parts.concat())),
        }
    }
}
