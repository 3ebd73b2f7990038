//! Which slice of each matrix a rank holds. Attention is split by whole heads: rank r takes query
//! heads `r*H/R..(r+1)*H/R` and the KV heads they read (divided when there are at least as many
//! KV heads as ranks, replicated otherwise); the feed-forward by `n_ff/R` rows of gate and up and
//! the same columns of down; the vocabulary by contiguous rows. Row-parallel matrices (O, down)
//! are cut between quantization blocks, so each rank's columns are whole blocks. A shape that
//! cannot be split at this rank count is refused before anything is read, naming the tensor.

use std::collections::HashMap;
use std::ops::Range;

use candle_core::quantized::gguf_file::TensorInfo;

use crate::error::{EngineError, EngineResult};
use crate::model::config::Config;

/// The largest group the hive spawns; a bigger one is refused.
pub const MAX_WORLD: usize = 8;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShardPlan {
    pub rank: usize,
    pub world: usize,
    /// Query heads of this rank.
    pub heads: Range<usize>,
    /// KV heads this rank stores (its query heads read only these).
    pub kv_heads: Range<usize>,
    /// Feed-forward rows of gate/up, columns of down.
    pub ff: Range<usize>,
    /// Vocabulary rows of the embeddings and the output head.
    pub vocab: Range<usize>,
}

fn split_error(tensor: &str, info: Option<&TensorInfo>, why: String) -> EngineError {
    let shape = info.map(|i| format!("{:?} ({:?})", i.shape.dims(), i.ggml_dtype)).unwrap_or_else(|| "missing".to_string());
    EngineError::invalid_request(format!("tensor-parallel split: {tensor} of shape {shape}: {why}"))
}

/// The even share `part` of `0..total` over `parts`.
pub fn share(total: usize, part: usize, parts: usize) -> Range<usize> {
    (total * part / parts)..(total * (part + 1) / parts)
}

impl ShardPlan {
    /// The plan of `rank` in a group of `world`, checked against every layer's tensors.
    pub fn new(config: &Config, tensors: &HashMap<String, TensorInfo>, rank: usize, world: usize) -> EngineResult<Self> {
        if world == 0 || world > MAX_WORLD || rank >= world {
            return Err(EngineError::invalid_request(format!("tensor-parallel rank {rank} of {world}: a group has 1 to {MAX_WORLD} ranks")));
        }
        let (h, kv, hd) = (config.n_head, config.n_head_kv, config.head_dim);
        let q_name = "blk.0.attn_q.weight";
        let k_name = "blk.0.attn_k.weight";
        if !h.is_multiple_of(world) {
            return Err(split_error(q_name, tensors.get(q_name), format!("{h} query heads cannot be split into whole heads over {world} ranks")));
        }
        let kv_heads = if kv >= world {
            if !kv.is_multiple_of(world) {
                return Err(split_error(k_name, tensors.get(k_name), format!("{kv} KV heads cannot be divided over {world} ranks")));
            }
            share(kv, rank, world)
        } else {
            // Fewer KV heads than ranks: each is replicated on the ranks whose query heads read it,
            // which needs every rank's heads inside one KV group.
            if !world.is_multiple_of(kv) {
                return Err(split_error(k_name, tensors.get(k_name), format!("{kv} KV heads cannot be replicated evenly over {world} ranks")));
            }
            let g = rank * kv / world;
            g..g + 1
        };
        let heads = share(h, rank, world);
        let gate = tensors.get("blk.0.ffn_gate.weight").ok_or_else(|| EngineError::invalid_gguf("tensor blk.0.ffn_gate.weight is missing"))?;
        let n_ff = gate.shape.dims()[0];
        let vocab_total = config.n_vocab;
        if vocab_total < world {
            return Err(split_error("token_embd.weight", tensors.get("token_embd.weight"), format!("{vocab_total} vocabulary rows over {world} ranks")));
        }
        let plan = Self { rank, world, heads, kv_heads, ff: share(n_ff, rank, world), vocab: share(vocab_total, rank, world) };
        for il in 0..config.n_layer {
            let o = format!("blk.{il}.attn_output.weight");
            check_columns(&o, tensors.get(&o), h * hd, hd * h / world, world)?;
            let down = format!("blk.{il}.ffn_down.weight");
            if !n_ff.is_multiple_of(world) {
                return Err(split_error(&down, tensors.get(&down), format!("{n_ff} feed-forward columns cannot be divided over {world} ranks")));
            }
            check_columns(&down, tensors.get(&down), n_ff, n_ff / world, world)?;
            for name in ["attn_q", "attn_k", "attn_v", "ffn_gate", "ffn_up"] {
                let name = format!("blk.{il}.{name}.weight");
                if !tensors.contains_key(&name) {
                    return Err(EngineError::invalid_gguf(format!("tensor {name} is missing")));
                }
            }
        }
        Ok(plan)
    }

    /// The model as this rank computes it: its query and KV heads only (the vocabulary, the
    /// embedding width and everything else as the whole model's).
    pub fn local_config(&self, config: &Config) -> Config {
        Config { n_head: self.heads.len(), n_head_kv: self.kv_heads.len(), ..config.clone() }
    }

    /// Which rank holds vocabulary row `id`.
    pub fn vocab_owner(n_vocab: usize, world: usize, id: usize) -> usize {
        (0..world).find(|r| share(n_vocab, *r, world).contains(&id)).unwrap_or(world - 1)
    }
}

/// A row-parallel matrix's input columns: `total` of them, `per_rank` each, cut between blocks.
fn check_columns(name: &str, info: Option<&TensorInfo>, total: usize, per_rank: usize, world: usize) -> EngineResult<()> {
    let info = info.ok_or_else(|| EngineError::invalid_gguf(format!("tensor {name} is missing")))?;
    let dims = info.shape.dims();
    if dims.len() != 2 || dims[1] != total {
        return Err(split_error(name, Some(info), format!("expected {total} input columns")));
    }
    let block = info.ggml_dtype.block_size();
    if !per_rank.is_multiple_of(block) {
        return Err(split_error(
            name,
            Some(info),
            format!("{per_rank} input columns per rank over {world} ranks do not fall on its {block}-column quantization blocks"),
        ));
    }
    Ok(())
}
