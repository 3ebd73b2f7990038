//! What the graph decode step launches for a model, decided on the host before anything is
//! allocated: the quantized types the kernels cover, how the Q/K/V products group into
//! launches, warps per row, the head's argmax grid, the attention split count, and the sizes of
//! the static buffers per batch bucket. Plain data, so it is tested without a GPU.

use std::ops::Range;

use candle_core::quantized::GgmlDType;

use crate::error::{EngineError, EngineResult, ErrorCode};
use crate::model::config::Config;
use crate::model::shard::plan::ShardPlan;

/// The batch sizes a decode graph can be captured for (one graph each).
pub const BATCH_BUCKETS: [usize; 6] = [1, 2, 4, 8, 16, 32];

/// The buckets captured for a model serving `slots` streams: up to the power of two that holds
/// every stream's decode row, at least PREFILL_ROWS (short prompts go in rows of one replay), at
/// most the largest bucket (more rows take several replays a step).
pub fn batch_buckets(slots: usize) -> Vec<usize> {
    let top = slots.max(1).next_power_of_two().clamp(PREFILL_ROWS, BATCH_BUCKETS[BATCH_BUCKETS.len() - 1]);
    BATCH_BUCKETS.into_iter().filter(|&b| b <= top).collect()
}

/// Prompt tokens one replay of the prefill graph evaluates (rows of one sequence).
pub const PREFILL_ROWS: usize = 8;

/// The most rows one mmvq launch serves (the kernels are instantiated for 1..=8 columns).
pub const MAX_KERNEL_BATCH: usize = 8;

/// Weight rows per tile of the MMQ kernels (mmq.cu).
pub const MMQ_TILE_ROWS: usize = 16;

/// The MMQ kernel (mmq.cu: tensor-core integer dots, each weight block read once for up to 32
/// batch rows) for a product of `qtype` weights split in segments of `seg_rows` rows, at `rows`
/// batch rows and `wpr` warps per row, and the batch rows one block covers. None where the
/// mat-vec kernels serve it in groups of 8: 8 rows or fewer, a 32-value block type, 4 warps per
/// row, or a segment that is not whole tiles. Either way a row's result is the same bits (the
/// MMQ kernels replay the mat-vec kernels' float order), so the choice is speed only.
pub fn mmq_kernel(qtype: QType, wpr: i32, rows: usize, seg_rows: &[usize]) -> Option<(String, usize)> {
    let k_quant = matches!(qtype, QType::Q4K | QType::Q5K | QType::Q6K);
    if rows <= MAX_KERNEL_BATCH || !k_quant || !(1..=2).contains(&wpr) || seg_rows.iter().any(|r| r % MMQ_TILE_ROWS != 0) {
        return None;
    }
    // 32 columns a block need every register with two warps' worth of partial sums per row.
    let cols = if wpr == 1 && rows > 16 { 32 } else { 16 };
    Some((format!("rbee_mmq_{}_w{wpr}_c{cols}", qtype.kernel_name()), cols))
}

/// `RBEE_CANDLE_MMQ=off` keeps wide batches on the mat-vec kernels in groups of 8: an A/B switch
/// for benches (the tokens are the same either way, only the speed differs).
pub fn mmq_enabled() -> bool {
    std::env::var("RBEE_CANDLE_MMQ").map_or(true, |v| v != "off")
}

/// Whether the decode graph's kernels go as programmatic dependent launches (common.cuh's
/// pdl_enter): on compute capability 9.0 and newer, unless `RBEE_CANDLE_PDL=off` (an A/B switch;
/// the arithmetic is the same either way). On an H100 they made the 8B shape's decode 3.4 %
/// faster (bench/results/2026-12-07-gpu-h100-vram-pdl-bad-input.md).
pub fn pdl_enabled(compute_major: i32) -> bool {
    compute_major >= 9 && std::env::var("RBEE_CANDLE_PDL").map_or(true, |v| v != "off")
}

/// A weight type with a kernel (the ggml type id is the kernels' `QType`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QType {
    Q4_0,
    Q5_0,
    Q8_0,
    Q4K,
    Q5K,
    Q6K,
}

impl QType {
    pub fn from_ggml(dtype: GgmlDType) -> Option<Self> {
        Some(match dtype {
            GgmlDType::Q4_0 => QType::Q4_0,
            GgmlDType::Q5_0 => QType::Q5_0,
            GgmlDType::Q8_0 => QType::Q8_0,
            GgmlDType::Q4K => QType::Q4K,
            GgmlDType::Q5K => QType::Q5K,
            GgmlDType::Q6K => QType::Q6K,
            _ => return None,
        })
    }

    /// The GGUF tensor type id (kernels/common.cuh's `QType`).
    pub fn id(self) -> i32 {
        match self {
            QType::Q4_0 => 2,
            QType::Q5_0 => 6,
            QType::Q8_0 => 8,
            QType::Q4K => 12,
            QType::Q5K => 13,
            QType::Q6K => 14,
        }
    }

    /// The suffix of the kernels' names (`rbee_mmvq_<suffix>_<nc>`).
    pub fn kernel_name(self) -> &'static str {
        match self {
            QType::Q4_0 => "q4_0",
            QType::Q5_0 => "q5_0",
            QType::Q8_0 => "q8_0",
            QType::Q4K => "q4_k",
            QType::Q5K => "q5_k",
            QType::Q6K => "q6_k",
        }
    }

    pub fn block_bytes(self) -> usize {
        match self {
            QType::Q4_0 => 18,
            QType::Q5_0 => 22,
            QType::Q8_0 => 34,
            QType::Q4K => 144,
            QType::Q5K => 176,
            QType::Q6K => 210,
        }
    }

    pub fn block_values(self) -> usize {
        match self {
            QType::Q4K | QType::Q5K | QType::Q6K => 256,
            _ => 32,
        }
    }

    /// Dot-product tasks per row (a K-quant block is 4 tasks of 64 values).
    fn tasks(self, k: usize) -> usize {
        k / self.block_values() * if self.block_values() == 256 { 4 } else { 1 }
    }
}

pub const SUPPORTED_TYPES: &str = "Q4_0, Q5_0, Q8_0, Q4_K, Q5_K, Q6_K";

/// A weight matrix as the GGUF stores it: `rows` rows of `k` values in `qtype` blocks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MatShape {
    pub qtype: QType,
    pub rows: usize,
    pub k: usize,
}

impl MatShape {
    /// Checks that `name` (dims as Candle gives them: [rows, k]) has a kernel and whole blocks.
    pub fn new(name: &str, dtype: GgmlDType, dims: &[usize]) -> EngineResult<Self> {
        let qtype = QType::from_ggml(dtype).ok_or_else(|| {
            EngineError::new(
                ErrorCode::UnsupportedQuantization,
                format!("tensor {name} is {dtype:?}: the graph forward path has kernels for {SUPPORTED_TYPES} only (use the tensor path for this model)"),
            )
        })?;
        let (rows, k) = match dims {
            [rows, k] => (*rows, *k),
            other => return Err(EngineError::invalid_gguf(format!("tensor {name}: a weight matrix has shape {other:?}"))),
        };
        if k % qtype.block_values() != 0 || k % 32 != 0 {
            return Err(EngineError::invalid_gguf(format!("tensor {name}: rows of {k} values are not whole {dtype:?} blocks")));
        }
        Ok(Self { qtype, rows, k })
    }

    pub fn row_bytes(&self) -> usize {
        self.k / self.qtype.block_values() * self.qtype.block_bytes()
    }

    pub fn bytes(&self) -> usize {
        self.rows * self.row_bytes()
    }
}

/// Warps per row of an mmvq launch: enough warps in flight to cover the GPU's SMs, as long as
/// each warp keeps at least one task per lane (the harness's default; it also times 1/2/4).
pub fn warps_per_row(shape: &MatShape, rows: usize, sms: usize) -> i32 {
    let tasks = shape.qtype.tasks(shape.k);
    let mut w = 1;
    while w < 4 && rows * w < sms * 32 && tasks >= 64 * w {
        w *= 2;
    }
    w as i32
}

/// Blocks of an mmvq launch over `rows` (128 threads = 4 warps, `4 / wpr` rows a block).
pub fn mmvq_grid(rows: usize, wpr: i32) -> u32 {
    let per_block = 4 / wpr as usize;
    rows.div_ceil(per_block) as u32
}

/// The output head's grid: capped, since each block leaves one argmax partial per column that
/// the final argmax kernel reads.
pub fn head_grid(rows: usize, wpr: i32, sms: usize) -> u32 {
    mmvq_grid(rows, wpr).min(head_grid_cap(sms))
}

pub fn head_grid_cap(sms: usize) -> u32 {
    (4 * sms * 8) as u32
}

/// How the Q, K and V products of a layer share launches: (first, count) over [q, k, v], one
/// launch per run of equal types (a Q4_K_M model's Q6_K attn_v takes its own launch).
pub fn qkv_launches(types: [QType; 3]) -> Vec<(usize, usize)> {
    let mut launches: Vec<(usize, usize)> = Vec::new();
    for (i, t) in types.iter().enumerate() {
        match launches.last_mut() {
            Some((first, count)) if types[*first] == *t => *count += 1,
            _ => launches.push((i, 1)),
        }
    }
    launches
}

/// Attention splits (flash-decoding parts per KV head and row), fixed when a graph is captured:
/// enough blocks to fill the SMs at batch 1 and a short context, at most 32.
/// `RBEE_CANDLE_ATTN_SPLITS` overrides it (1..=64).
pub fn attention_splits(n_kv: usize, batch: usize, sms: usize) -> EngineResult<usize> {
    if let Ok(value) = std::env::var("RBEE_CANDLE_ATTN_SPLITS") {
        if !value.is_empty() {
            return match value.parse::<usize>() {
                Ok(n) if (1..=64).contains(&n) => Ok(n),
                _ => Err(EngineError::invalid_request(format!("RBEE_CANDLE_ATTN_SPLITS: expected 1..64, got \"{value}\""))),
            };
        }
    }
    Ok((sms / (n_kv * batch).max(1)).clamp(1, 32))
}

/// Element counts of the static step buffers for `batch` rows (every row is a batch row).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BufferSizes {
    /// Residual stream, f32 [batch][n_embd].
    pub x: usize,
    /// Gemma's branch output before its post norm, f32 [batch][n_embd] (0 otherwise).
    pub branch: usize,
    /// Q, K, V of the step, f32 [batch][(n_head + 2 n_kv) hd].
    pub qkv: usize,
    pub logits: usize,
    /// q8_1 planes: norm output (n_embd), attention output (n_head hd), GLU output (n_ff); bytes.
    pub xq: usize,
    pub aq: usize,
    pub hq: usize,
    /// Their {d, s} planes, half2 each.
    pub xds: usize,
    pub ads: usize,
    pub hds: usize,
    /// Attention parts: f32 [batch][n_head][nsplit][hd] and float2 [batch][n_head][nsplit].
    pub part_o: usize,
    pub part_ml: usize,
    /// Head argmax partials per row.
    pub argmax: usize,
    /// The MMQ path's gate and up products, f32 [batch][n_ff] each (0 up to MAX_KERNEL_BATCH rows).
    pub glu: usize,
}

impl BufferSizes {
    pub fn new(cfg: &Config, n_ff: usize, batch: usize, nsplit: usize, sms: usize) -> Self {
        let attn = cfg.n_head * cfg.head_dim;
        let gemma = cfg.arch == crate::model::config::Arch::Gemma3;
        Self {
            x: batch * cfg.n_embd,
            branch: if gemma { batch * cfg.n_embd } else { 0 },
            qkv: batch * (cfg.n_head + 2 * cfg.n_head_kv) * cfg.head_dim,
            logits: batch * cfg.n_vocab,
            xq: batch * cfg.n_embd,
            aq: batch * attn,
            hq: batch * n_ff,
            xds: batch * cfg.n_embd / 32,
            ads: batch * attn / 32,
            hds: batch * n_ff / 32,
            part_o: batch * cfg.n_head * nsplit * cfg.head_dim,
            part_ml: batch * cfg.n_head * nsplit,
            argmax: batch * head_grid_cap(sms) as usize,
            glu: if batch > MAX_KERNEL_BATCH { batch * n_ff } else { 0 },
        }
    }

    pub fn bytes(&self) -> usize {
        4 * (self.x + self.branch + self.qkv + self.logits + self.part_o + 2 * self.part_ml + self.argmax * 2 + self.glu * 2)
            + self.xq
            + self.aq
            + self.hq
            + 4 * (self.xds + self.ads + self.hds)
    }
}

/// Bytes of the f16 KV cache: K and V, [layer][slot][n_kv][capacity][hd].
pub fn kv_cache_bytes(cfg: &Config, capacity: usize, slots: usize) -> usize {
    2 * 2 * cfg.n_layer * slots * cfg.n_head_kv * capacity * cfg.head_dim
}

/// The model-level checks the kernels need (head sizes, GQA group, norm width).
pub fn check_config(cfg: &Config) -> EngineResult<()> {
    let unsupported = |what: String| EngineError::new(ErrorCode::UnsupportedArchitecture, format!("the graph forward path does not support {what}"));
    if ![64, 128, 256].contains(&cfg.head_dim) {
        return Err(unsupported(format!("head size {} (attention kernels exist for 64, 128 and 256)", cfg.head_dim)));
    }
    if cfg.n_head / cfg.n_head_kv > 8 {
        return Err(unsupported(format!("{} query heads per KV head (at most 8)", cfg.n_head / cfg.n_head_kv)));
    }
    if !cfg.n_embd.is_multiple_of(32) || !(cfg.n_head * cfg.head_dim).is_multiple_of(32) {
        return Err(unsupported(format!("embedding width {} (a multiple of 32 is needed)", cfg.n_embd)));
    }
    // The norm kernel keeps a row in dynamic shared memory (48 KiB without opting in).
    if cfg.n_embd * 4 > 48 * 1024 {
        return Err(unsupported(format!("embedding width {} (at most 12288)", cfg.n_embd)));
    }
    Ok(())
}

/// Kernels one decode step launches: the embedding, per layer norm, the Q/K/V launches, RoPE,
/// attention split and reduce, o-projection, norm, gate+up, down; then the final norm, the head
/// and the final argmax.
pub fn kernels_per_step(qkv_launches_per_layer: &[usize]) -> usize {
    1 + qkv_launches_per_layer.iter().map(|q| 8 + q).sum::<usize>() + 3
}

/// The part of a weight matrix (or of a bias) a process holds: all of it, or in a
/// tensor-parallel group its output rows (column-parallel) or input columns (row-parallel: whole
/// quantization blocks of every row, shard::plan checks they are).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Part {
    All,
    Rows(Range<usize>),
    Cols(Range<usize>),
}

impl Part {
    /// Which part of tensor `name` the rank of `plan` holds (all of everything without one).
    pub fn of(name: &str, plan: Option<&ShardPlan>, head_dim: usize) -> Part {
        let Some(p) = plan else { return Part::All };
        let heads = p.heads.start * head_dim..p.heads.end * head_dim;
        let kv = p.kv_heads.start * head_dim..p.kv_heads.end * head_dim;
        let kind = name.split('.').rev().nth(1).unwrap_or("");
        match kind {
            "attn_q" => Part::Rows(heads),
            "attn_k" | "attn_v" => Part::Rows(kv),
            "attn_output" => Part::Cols(heads),
            "ffn_gate" | "ffn_up" => Part::Rows(p.ff.clone()),
            "ffn_down" => Part::Cols(p.ff.clone()),
            "output" => Part::Rows(p.vocab.clone()),
            _ => Part::All,
        }
    }

    pub fn shape(&self, full: MatShape) -> MatShape {
        match self {
            Part::All => full,
            Part::Rows(rows) => MatShape { rows: rows.len(), ..full },
            Part::Cols(cols) => MatShape { k: cols.len(), ..full },
        }
    }

    /// Where this part of a matrix lies in its raw blocks (`full`): (byte offset, bytes) runs,
    /// one for whole rows, one a row for a range of columns.
    pub fn runs(&self, name: &str, full: MatShape) -> EngineResult<Vec<(usize, usize)>> {
        let row_bytes = full.row_bytes();
        let whole_blocks = |cols: &Range<usize>| cols.start.is_multiple_of(full.qtype.block_values()) && cols.len().is_multiple_of(full.qtype.block_values());
        match self {
            Part::All => Ok(vec![(0, full.bytes())]),
            Part::Rows(rows) if rows.end <= full.rows => Ok(vec![(rows.start * row_bytes, rows.len() * row_bytes)]),
            Part::Cols(cols) if cols.end <= full.k && whole_blocks(cols) => {
                let (bv, bb) = (full.qtype.block_values(), full.qtype.block_bytes());
                let (first, bytes) = (cols.start / bv * bb, cols.len() / bv * bb);
                Ok((0..full.rows).map(|row| (row * row_bytes + first, bytes)).collect())
            }
            _ => Err(EngineError::invalid_gguf(format!("tensor {name}: {self:?} is not a whole-block part of {full:?}"))),
        }
    }

    /// This part of a matrix's raw blocks, cut out of all of them (`full` describes `data`).
    pub fn of_blocks(&self, name: &str, full: MatShape, data: &[u8]) -> EngineResult<Vec<u8>> {
        let runs = self.runs(name, full)?;
        let mut out = Vec::with_capacity(runs.iter().map(|r| r.1).sum());
        for (offset, bytes) in runs {
            out.extend_from_slice(&data[offset..offset + bytes]);
        }
        Ok(out)
    }

    pub fn of_vector(&self, name: &str, values: Vec<f32>) -> EngineResult<Vec<f32>> {
        match self {
            Part::All => Ok(values),
            Part::Rows(rows) if rows.end <= values.len() => Ok(values[rows.clone()].to_vec()),
            _ => Err(EngineError::invalid_gguf(format!("tensor {name}: {self:?} of a vector of {}", values.len()))),
        }
    }
}

/// A tensor-parallel rank's exchange buffer (kernels/tp.cu), one device allocation that every
/// other rank of the group maps (CUDA IPC): the same layout on every rank, so a peer's piece is
/// its base plus the same offset. Byte offsets, each piece 256-byte aligned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TpLayout {
    /// Rows of the largest decode bucket.
    pub rows: usize,
    pub n_embd: usize,
    /// The widest rank's vocabulary slice: the row stride of every rank's logits.
    pub vocab_ld: usize,
}

impl TpLayout {
    /// The rank's published-exchange counter (u64).
    pub const COUNTER: usize = 0;
    /// The rank's error word (i32): set when an exchange gave up waiting.
    pub const ERROR: usize = 8;
    const HEADER: usize = 256;

    fn align(bytes: usize) -> usize {
        bytes.next_multiple_of(256)
    }

    /// The part (f32 [rows][n_embd]) of exchanges with index parity `k`: parts are double buffered.
    pub fn part(&self, k: usize) -> usize {
        Self::HEADER + (k % 2) * Self::align(4 * self.rows * self.n_embd)
    }

    /// The rank's slice of the logits, f32 [rows][vocab_ld].
    pub fn logits(&self) -> usize {
        Self::HEADER + 2 * Self::align(4 * self.rows * self.n_embd)
    }

    /// The rank's best value (f32) and vocabulary-local id (i32) per row, of its slice.
    pub fn best_val(&self) -> usize {
        self.logits() + Self::align(4 * self.rows * self.vocab_ld)
    }

    pub fn best_idx(&self) -> usize {
        self.best_val() + Self::align(4 * self.rows)
    }

    pub fn bytes(&self) -> usize {
        self.best_idx() + Self::align(4 * self.rows)
    }
}

/// The exchanges of one decode launch: after the O and the down projection of every layer, and
/// the greedy pick over the vocabulary slices.
pub fn tp_exchanges(n_layer: usize) -> usize {
    2 * n_layer + 1
}

#[cfg(test)]
mod tests;
