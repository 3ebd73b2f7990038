//! The graph decoder on a CUDA device: loads the weights as raw GGUF blocks, allocates every
//! buffer a step needs, captures the step as a CUDA graph and replays it per token.
//!
//! It shares Candle's CUDA context (the device the engine parsed), so tensors of the other
//! paths and these buffers live in one context; it uses its own non-blocking stream, and
//! passes raw device addresses to the kernels (no cudarc event tracking inside a capture).

use std::collections::HashMap;
use std::ffi::c_void;
use std::sync::Arc;

use candle_core::cuda_backend::cudarc::driver::{CudaContext, CudaGraph, CudaStream, DriverError};

use super::plan::{self, BufferSizes, QType};
use crate::error::{EngineError, EngineResult};
use crate::model::config::{Arch, Config};

#[path = "exchange.rs"]
mod exchange;
#[path = "kernels.rs"]
mod kernels;
#[path = "launches.rs"]
mod launches;
#[path = "load.rs"]
mod load;
#[path = "memory.rs"]
mod memory;
#[path = "prefill.rs"]
mod prefill;
#[path = "step.rs"]
mod step;
#[path = "tp.rs"]
mod tp;
#[path = "weights.rs"]
mod weights;

use kernels::Kernels;
use memory::{trace_vram, vram_tracing, DeviceArena, DeviceBuffer};
use weights::{Layer, Mat};

fn cu<T>(what: &str, result: Result<T, DriverError>) -> EngineResult<T> {
    result.map_err(|e| EngineError::internal(format!("cuda {what}: {e}")))
}

/// A kernel parameter's address, for cuLaunchKernelEx's parameter array.
fn param<T>(value: &mut T) -> *mut c_void {
    std::ptr::from_mut(value).cast()
}

fn ptr(buffer: &Option<DeviceBuffer>) -> u64 {
    buffer.as_ref().map_or(0, |b| b.ptr)
}

struct Buffers {
    x: DeviceBuffer,
    branch: Option<DeviceBuffer>,
    qkv: DeviceBuffer,
    logits: DeviceBuffer,
    xq: DeviceBuffer,
    aq: DeviceBuffer,
    hq: DeviceBuffer,
    xds: DeviceBuffer,
    ads: DeviceBuffer,
    hds: DeviceBuffer,
    part_o: DeviceBuffer,
    part_ml: DeviceBuffer,
    argmax_val: DeviceBuffer,
    argmax_idx: DeviceBuffer,
    /// The MMQ path's gate and up products (None when no bucket is wider than 8 rows).
    glu: Option<(DeviceBuffer, DeviceBuffer)>,
    tokens: DeviceBuffer,
    pos: DeviceBuffer,
    slot: DeviceBuffer,
}

impl Buffers {
    fn new(mem: &Arc<DeviceArena>, sizes: &BufferSizes, batch: usize) -> EngineResult<Self> {
        let f32s = |n: usize| mem.zeroed(4 * n);
        Ok(Self {
            x: f32s(sizes.x)?,
            branch: if sizes.branch > 0 { Some(f32s(sizes.branch)?) } else { None },
            qkv: f32s(sizes.qkv)?,
            logits: f32s(sizes.logits)?,
            xq: mem.zeroed(sizes.xq)?,
            aq: mem.zeroed(sizes.aq)?,
            hq: mem.zeroed(sizes.hq)?,
            xds: f32s(sizes.xds)?,
            ads: f32s(sizes.ads)?,
            hds: f32s(sizes.hds)?,
            part_o: f32s(sizes.part_o)?,
            part_ml: f32s(2 * sizes.part_ml)?,
            argmax_val: f32s(sizes.argmax)?,
            argmax_idx: f32s(sizes.argmax)?,
            glu: if sizes.glu > 0 { Some((f32s(sizes.glu)?, f32s(sizes.glu)?)) } else { None },
            tokens: f32s(batch)?,
            pos: f32s(batch)?,
            // Each row's KV-cache slot: a step's rows are decoding streams' tokens and prompt
            // slices, each in its own stream's slot.
            slot: mem.zeroed(4 * batch)?,
        })
    }
}

pub struct GraphDecoder {
    pub config: Config,
    ctx: Arc<CudaContext>,
    /// Where every device buffer below lives (memory.rs).
    mem: Arc<DeviceArena>,
    stream: Arc<CudaStream>,
    kernels: Kernels,
    sms: usize,
    embeddings: Mat,
    /// None: tied to the token embeddings.
    output: Option<Mat>,
    output_norm: DeviceBuffer,
    layers: Vec<Layer>,
    /// inv_freq of the global rope, and of the sliding-window layers' when the model has them.
    inv_freq: Vec<DeviceBuffer>,
    freq_factors: Option<DeviceBuffer>,
    k_cache: DeviceBuffer,
    v_cache: DeviceBuffer,
    /// Elements from one slot to the next, and from one layer to the next, in either cache.
    slot_stride: usize,
    layer_stride: usize,
    capacity: usize,
    /// Streams served at once: one KV cache of `capacity` positions each.
    slots: usize,
    /// Batch sizes with a captured graph, ascending.
    buckets: Vec<usize>,
    n_ff: usize,
    /// Attention splits, the same in every captured graph: a row's arithmetic must not depend
    /// on how many rows share its step (a stream batched gets what it gets alone).
    nsplit: usize,
    buffers: Buffers,
    /// The captured step, per batch bucket (plan::batch_buckets): a step's rows go to the
    /// smallest bucket that holds them.
    graphs: HashMap<usize, Graph>,
    kernels_per_step: usize,
    /// Kernels launched as programmatic dependent launches (plan::pdl_enabled).
    pdl: bool,
    /// The GEMM prefill's buffers (None while loading, and in a tensor-parallel group, whose
    /// prompts go through the decode graphs).
    prefill: Option<prefill::Prefill>,
    /// This process's rank of a tensor-parallel group (tp.rs); None alone.
    tp: Option<tp::TpRank>,
    pub weight_bytes: usize,
    cache_bytes: usize,
}

impl GraphDecoder {
    pub fn context_size(&self) -> usize {
        self.capacity
    }

    pub fn slots(&self) -> usize {
        self.slots
    }

    pub fn cache_bytes(&self) -> usize {
        self.cache_bytes
    }

    /// Kernels in one captured step (batch 1).
    pub fn kernels_per_step(&self) -> usize {
        self.kernels_per_step
    }

    fn gemma(&self) -> bool {
        self.config.arch == Arch::Gemma3
    }

    fn head(&self) -> &Mat {
        self.output.as_ref().unwrap_or(&self.embeddings)
    }

    fn kernel_names(&self, batch: usize) -> Vec<String> {
        let wide = batch > plan::MAX_KERNEL_BATCH;
        let batch = batch.min(plan::MAX_KERNEL_BATCH);
        let mut names = vec!["rbee_embed_rows".to_string(), "rbee_rmsnorm_q8_1".to_string(), "rbee_rope_kv".to_string(), "rbee_argmax_final".to_string()];
        names.push(format!("rbee_attn_split_{}", self.config.head_dim));
        names.push(format!("rbee_attn_reduce_{}", self.config.head_dim));
        let mut mats: Vec<&Mat> = vec![self.head()];
        for layer in &self.layers {
            mats.extend(layer.qkv.iter());
            mats.extend([&layer.o, &layer.down]);
            names.push(format!("rbee_mmvq_glu_{}_{batch}", layer.gate.shape.qtype.kernel_name()));
        }
        if wide {
            names.push("rbee_glu_q8_1".to_string());
            for layer in &self.layers {
                mats.push(&layer.gate);
            }
        }
        for m in mats {
            names.push(format!("rbee_mmvq_{}_{batch}", m.shape.qtype.kernel_name()));
            if wide && matches!(m.shape.qtype, QType::Q4K | QType::Q5K | QType::Q6K) {
                // Every variant of the type: which one a launch takes depends on its rows and warps.
                names.extend(["w1_c16", "w1_c32", "w2_c16"].map(|v| format!("rbee_mmq_{}_{v}", m.shape.qtype.kernel_name())));
            }
        }
        names.sort();
        names.dedup();
        names
    }
}

/// A captured graph. cudarc leaves `CudaGraph` !Send (graph objects are not internally
/// synchronized); the engine's mutex around the decoder serializes every use.
struct Graph(CudaGraph);
// SAFETY: only used behind the engine's `Mutex<Decoder>`, never from two threads at once.
unsafe impl Send for Graph {}

fn gib(bytes: usize) -> f64 {
    bytes as f64 / (1u64 << 30) as f64
}
