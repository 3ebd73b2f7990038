//! The graph decoder on a CUDA device: loads the weights as raw GGUF blocks, allocates every
//! buffer a step needs, captures the step as a CUDA graph and replays it per token.
//!
//! It shares Candle's CUDA context (the device the engine parsed), so tensors of the other
//! paths and these buffers live in one context; it uses its own non-blocking stream, and
//! passes raw device addresses to the kernels (no cudarc event tracking inside a capture).

use std::collections::HashMap;
use std::ffi::c_void;
use std::io::{Read, Seek, SeekFrom};
use std::sync::Arc;
use std::time::Duration;

use candle_core::cuda_backend::cudarc::driver::{result, sys, CudaContext, CudaFunction, CudaGraph, CudaModule, CudaStream, DriverError};
use candle_core::cuda_backend::cudarc::nvrtc::Ptx;
use candle_core::quantized::gguf_file::Content;
use candle_core::Device;

use super::args::{AttnArgs, AttnReduceArgs, GluArgs, RopeArgs};
use super::plan::{self, BufferSizes, MatShape, Part, QType};
use crate::error::{EngineError, EngineResult, ErrorCode};
use crate::model::config::{Activation, Arch, Config};
use crate::model::decoder::StepOutput;
use crate::model::shard::plan::{share, ShardPlan};
use crate::model::{Loader, Segment};

#[path = "exchange.rs"]
mod exchange;
#[path = "launches.rs"]
mod launches;
#[path = "memory.rs"]
mod memory;
#[path = "prefill.rs"]
mod prefill;
#[path = "tp.rs"]
mod tp;

use memory::{trace_vram, vram_tracing, DeviceArena, DeviceBuffer};

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

/// The kernels' fatbins (build.rs), one module per .cu file.
const MODULES: [(&str, &[u8]); 8] = [
    ("norm", include_bytes!(concat!(env!("OUT_DIR"), "/norm.fatbin"))),
    ("mmvq", include_bytes!(concat!(env!("OUT_DIR"), "/mmvq.fatbin"))),
    ("rope", include_bytes!(concat!(env!("OUT_DIR"), "/rope.fatbin"))),
    ("attention", include_bytes!(concat!(env!("OUT_DIR"), "/attention.fatbin"))),
    ("sample", include_bytes!(concat!(env!("OUT_DIR"), "/sample.fatbin"))),
    ("prefill", include_bytes!(concat!(env!("OUT_DIR"), "/prefill.fatbin"))),
    ("mmq", include_bytes!(concat!(env!("OUT_DIR"), "/mmq.fatbin"))),
    ("tp", include_bytes!(concat!(env!("OUT_DIR"), "/tp.fatbin"))),
];

/// prefill.cu's kernels (the GEMM prefill's helpers).
const PREFILL_KERNELS: [&str; 5] = ["rbee_dequant_f32", "rbee_dequant_bf16", "rbee_f32_to_bf16", "rbee_glu_f32", "rbee_add_bias"];

fn module_of(kernel: &str) -> usize {
    if kernel.starts_with("rbee_rmsnorm") || kernel.starts_with("rbee_quantize") {
        0
    } else if kernel.starts_with("rbee_mmvq") {
        1
    } else if kernel.starts_with("rbee_rope") {
        2
    } else if kernel.starts_with("rbee_attn") {
        3
    } else if PREFILL_KERNELS.contains(&kernel) {
        5
    } else if kernel.starts_with("rbee_mmq") || kernel == "rbee_glu_q8_1" {
        6
    } else if kernel.starts_with("rbee_tp_") {
        7
    } else {
        4
    }
}

struct Kernels {
    modules: Vec<Arc<CudaModule>>,
    functions: HashMap<String, CudaFunction>,
}

impl Kernels {
    fn load(ctx: &Arc<CudaContext>) -> EngineResult<Self> {
        let modules = MODULES
            .iter()
            .map(|(name, image)| {
                ctx.load_module(Ptx::from_binary(image.to_vec()))
                    .map_err(|e| EngineError::new(ErrorCode::DeviceUnavailable, format!("loading the {name} kernels on this GPU: {e}")))
            })
            .collect::<EngineResult<Vec<_>>>()?;
        Ok(Self { modules, functions: HashMap::new() })
    }

    fn require(&mut self, name: &str) -> EngineResult<()> {
        if !self.functions.contains_key(name) {
            let function = cu(name, self.modules[module_of(name)].load_function(name))?;
            self.functions.insert(name.to_string(), function);
        }
        Ok(())
    }

    fn get(&self, name: &str) -> EngineResult<&CudaFunction> {
        self.functions.get(name).ok_or_else(|| EngineError::internal(format!("kernel {name} was not loaded")))
    }
}

struct Mat {
    buffer: DeviceBuffer,
    shape: MatShape,
}

struct Layer {
    attn_norm: DeviceBuffer,
    qkv: [Mat; 3],
    qkv_bias: [Option<DeviceBuffer>; 3],
    q_norm: Option<DeviceBuffer>,
    k_norm: Option<DeviceBuffer>,
    o: Mat,
    post_attn_norm: Option<DeviceBuffer>,
    ffn_norm: DeviceBuffer,
    gate: Mat,
    up: Mat,
    down: Mat,
    post_ffn_norm: Option<DeviceBuffer>,
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

/// What the GPU must hold, before any of it is allocated (the `insufficient_vram` check).
struct Footprint {
    weights: usize,
    cache: usize,
    buffers: usize,
}

/// The raw blocks of (a part of) one weight matrix, read straight from the file into device memory.
fn matrix<R: Read + Seek>(loader: &mut Loader<'_, R>, mem: &Arc<DeviceArena>, name: &str, part: &Part) -> EngineResult<Mat> {
    let (shape, data) = read_matrix(loader, name, part)?;
    Ok(Mat { buffer: mem.upload(&data)?, shape })
}

/// The raw blocks of (a part of) one weight matrix, read from the file (progress counted): a rank
/// of a group reads only the bytes of its part.
fn read_matrix<R: Read + Seek>(loader: &mut Loader<'_, R>, name: &str, part: &Part) -> EngineResult<(MatShape, Vec<u8>)> {
    let full = matrix_shape(loader.content, name)?;
    let runs = part.runs(name, full)?;
    let start = loader.content.tensor_data_offset + loader.content.tensor_infos[name].offset;
    let mut data = vec![0u8; runs.iter().map(|r| r.1).sum()];
    let mut at = 0;
    for (offset, bytes) in runs {
        loader
            .reader
            .seek(SeekFrom::Start(start + offset as u64))
            .and_then(|_| loader.reader.read_exact(&mut data[at..at + bytes]))
            .map_err(|e| EngineError::invalid_gguf(format!("tensor {name}: {e}")))?;
        at += bytes;
    }
    loader.bytes += data.len();
    loader.loaded += 1;
    (loader.progress)(loader.loaded as f64 / loader.total.max(1) as f64);
    Ok((part.shape(full), data))
}

fn matrix_shape(content: &Content, name: &str) -> EngineResult<MatShape> {
    let info = content.tensor_infos.get(name).ok_or_else(|| EngineError::invalid_gguf(format!("tensor {name} is missing")))?;
    MatShape::new(name, info.ggml_dtype, info.shape.dims())
}

fn vector<R: Read + Seek>(loader: &mut Loader<'_, R>, mem: &Arc<DeviceArena>, name: &str) -> EngineResult<DeviceBuffer> {
    let values = loader.vector(name)?;
    mem.upload(&values)
}

fn optional_vector<R: Read + Seek>(loader: &mut Loader<'_, R>, mem: &Arc<DeviceArena>, name: &str, part: &Part) -> EngineResult<Option<DeviceBuffer>> {
    if loader.has(name) {
        let values = part.of_vector(name, loader.vector(name)?)?;
        mem.upload(&values).map(Some)
    } else {
        Ok(None)
    }
}

/// base^(-2i/n_rot) for each pair, as ggml builds it (repeated f32 products).
fn inv_freq(n_rot: usize, base: f32) -> Vec<f32> {
    let scale = base.powf(-2.0 / n_rot as f32);
    let mut theta = 1.0f32;
    (0..n_rot / 2)
        .map(|_| {
            let v = theta;
            theta *= scale;
            v
        })
        .collect()
}

impl GraphDecoder {
    /// Loads the model for `slots` streams of `context_size` positions. In a tensor-parallel
    /// group (`tp`: this rank's plan and the longest an exchange may wait), only this rank's slice
    /// of every matrix (shard::plan), a KV cache of its heads and an exchange buffer the other
    /// ranks map; its graphs are captured once the group has joined (`join`).
    #[allow(clippy::too_many_arguments)]
    pub fn load<R: Read + Seek>(
        config: Config,
        content: &Content,
        reader: &mut R,
        device: &Device,
        context_size: usize,
        slots: usize,
        tp: Option<(ShardPlan, Duration)>,
        progress: &mut dyn FnMut(f64),
    ) -> EngineResult<Self> {
        let cuda = match device {
            Device::Cuda(cuda) => cuda,
            _ => return Err(EngineError::new(ErrorCode::DeviceUnavailable, "the graph forward path runs on a CUDA device (cuda:N) only")),
        };
        let shard = tp.as_ref().map(|(p, _)| p);
        // A rank computes its heads only: its attention is a model of fewer heads.
        let config = match shard {
            Some(p) => p.local_config(&config),
            None => config,
        };
        plan::check_config(&config)?;
        let part = |name: &str| Part::of(name, shard, config.head_dim);
        let ctx = cuda.cuda_stream().context().clone();
        cu("bind", ctx.bind_to_thread())?;
        let sms = cu("attribute", ctx.attribute(sys::CUdevice_attribute::CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT))? as usize;
        let pdl = plan::pdl_enabled(cu("attribute", ctx.attribute(sys::CUdevice_attribute::CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR))?);
        let capacity = context_size.max(1);
        let slots = slots.max(1);
        let buckets = plan::batch_buckets(slots);
        let batch = *buckets.last().expect("at least one bucket");
        let nsplit = plan::attention_splits(config.n_head_kv, 1, sms)?;
        let max_split = nsplit;

        // Every matrix's type and shape first: a type without a kernel, or a model that does not
        // fit, fails here with nothing allocated.
        // An untied model's token embeddings stay in host memory, as llama.cpp keeps them: a step
        // reads one row a token over the bus, and an 8B model's VRAM is ~280 MiB less. A tied
        // table is also the output head, which reads all of it every step: on the GPU.
        // A rank keeps the whole table on the host for the lookup, and its vocabulary rows of the
        // head (tied or not) on the GPU.
        let untied = content.tensor_infos.contains_key("output.weight");
        let host_embeddings = untied || shard.is_some();
        let embed_shape = matrix_shape(content, "token_embd.weight")?;
        let embed_bytes = embed_shape.bytes();
        let head_part = shard.map_or(Part::All, |p| Part::Rows(p.vocab.clone()));
        let head_shape = head_part.shape(if untied { matrix_shape(content, "output.weight")? } else { embed_shape });
        let mut weights = if host_embeddings { head_shape.bytes() } else { embed_bytes };
        let mut n_ff = 0;
        // Elements of the largest weight group a prefill GEMM reads (Q+K+V, gate+up, o, down).
        let mut largest_group = 0;
        for il in 0..config.n_layer {
            let mut qkv = 0;
            let mut gate_up = 0;
            for kind in ["attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate", "ffn_up", "ffn_down"] {
                let name = format!("blk.{il}.{kind}.weight");
                let shape = part(&name).shape(matrix_shape(content, &name)?);
                if kind == "ffn_gate" {
                    n_ff = shape.rows;
                }
                let elements = shape.rows * shape.k;
                match kind {
                    "attn_q" | "attn_k" | "attn_v" => qkv += elements,
                    "ffn_gate" | "ffn_up" => gate_up += elements,
                    _ => largest_group = usize::max(largest_group, elements),
                }
                weights += shape.bytes();
            }
            largest_group = largest_group.max(qkv).max(gate_up);
        }
        let chunk = prefill::prefill_chunk_size()?;
        let mut sizes = BufferSizes::new(&config, n_ff, batch, max_split, sms);
        if shard.is_some() {
            // A rank's logits are its vocabulary slice, in its exchange buffer.
            sizes.logits = 0;
        }
        let attn = config.n_head * config.head_dim;
        let qkv_width = (config.n_head + 2 * config.n_head_kv) * config.head_dim;
        let gemma = config.arch == Arch::Gemma3;
        let gemm = prefill::GemmType::from_env()?;
        let prefill_shape =
            prefill::PrefillShape { d: config.n_embd, attn, qkv_width, n_ff, n_head: config.n_head, head_dim: config.head_dim, largest_group, gemma };
        let prefill_sizes = prefill::PrefillSizes::new(&prefill_shape, chunk, gemm);
        // A group's prompts go through the decode graphs (no GEMM prefill); its exchange buffer is
        // an allocation of its own.
        let tp_layout = shard.map(|p| plan::TpLayout {
            rows: batch,
            n_embd: config.n_embd,
            vocab_ld: (0..p.world).map(|r| share(config.n_vocab, r, p.world).len()).max().unwrap_or(0),
        });
        let step_buffers = sizes.bytes() + if shard.is_some() { 0 } else { prefill_sizes.total() };
        let need = Footprint { weights, cache: plan::kv_cache_bytes(&config, capacity, slots), buffers: step_buffers };
        let exchange_bytes = tp_layout.map_or(0, |l| l.bytes());
        trace_vram("the CUDA context and Candle's device (before the graph decoder)");
        let (free, total) = cu("memory info", result::mem_get_info())?;
        // The modules, the graph and the driver's own allocations take some too.
        let margin = 256 << 20;
        let needed = need.weights + need.cache + need.buffers + exchange_bytes + margin;
        if needed > free {
            return Err(EngineError::new(
                ErrorCode::InsufficientVram,
                format!(
                    "the model needs {:.2} GiB on the GPU ({:.2} GiB weights, {:.2} GiB KV cache for {slots} x {capacity} positions, {:.2} GiB buffers and headroom); {:.2} of {:.2} GiB are free",
                    gib(needed),
                    gib(need.weights),
                    gib(need.cache),
                    gib(need.buffers + exchange_bytes + margin),
                    gib(free),
                    gib(total)
                ),
            ));
        }

        // Everything below in one allocation: the matrices and buffers counted above, the f32
        // vectors (norms, biases, rope factors) and each piece's alignment.
        let vector_bytes: usize =
            content.tensor_infos.values().filter(|info| info.shape.dims().len() == 1).map(|info| 4 * info.shape.elem_count()).sum::<usize>() + 4 * config.n_rot;
        let pieces = content.tensor_infos.len() + 64;
        let mem = DeviceArena::new(&ctx, need.weights + need.cache + need.buffers + vector_bytes + pieces * DeviceArena::footprint(0))?;
        trace_vram("the arena (weights, KV cache, buffers)");
        let mut kernels = Kernels::load(&ctx)?;
        trace_vram("the kernel modules");
        let stream = cu("stream", ctx.new_stream())?;
        let total_tensors = content.tensor_infos.len();
        let mut loader = Loader { content, reader, device, bytes: 0, loaded: 0, total: total_tensors, progress };
        let (_, embed_data) = read_matrix(&mut loader, "token_embd.weight", &Part::All)?;
        // A rank of a tied model: its vocabulary rows of the table are its slice of the head.
        let tied_head = match (&head_part, untied) {
            (Part::Rows(_), false) => {
                Some(Mat { buffer: mem.upload(&head_part.of_blocks("token_embd.weight", embed_shape, &embed_data)?)?, shape: head_shape })
            }
            _ => None,
        };
        let embeddings =
            Mat { buffer: if host_embeddings { DeviceBuffer::host_mapped(&ctx, &embed_data)? } else { mem.upload(&embed_data)? }, shape: embed_shape };
        drop(embed_data);
        if host_embeddings {
            trace_vram(&format!("the token embeddings ({:.1} MiB, in mapped host memory)", embed_bytes as f64 / 1048576.0));
        }
        let output = if untied { Some(matrix(&mut loader, &mem, "output.weight", &head_part)?) } else { tied_head };
        let output_norm = vector(&mut loader, &mem, "output_norm.weight")?;
        let freq_factors = optional_vector(&mut loader, &mem, "rope_freqs.weight", &Part::All)?;
        let mut inv = vec![mem.upload(&inv_freq(config.n_rot, config.rope_base))?];
        if config.swa_window.is_some() {
            inv.push(mem.upload(&inv_freq(config.n_rot, config.rope_base_swa))?);
        }
        let mut layers = Vec::with_capacity(config.n_layer);
        for il in 0..config.n_layer {
            let p = format!("blk.{il}");
            let name = |part: &str| format!("{p}.{part}");
            let layer = Layer {
                attn_norm: vector(&mut loader, &mem, &name("attn_norm.weight"))?,
                qkv: [
                    matrix(&mut loader, &mem, &name("attn_q.weight"), &part(&name("attn_q.weight")))?,
                    matrix(&mut loader, &mem, &name("attn_k.weight"), &part(&name("attn_k.weight")))?,
                    matrix(&mut loader, &mem, &name("attn_v.weight"), &part(&name("attn_v.weight")))?,
                ],
                qkv_bias: [
                    optional_vector(&mut loader, &mem, &name("attn_q.bias"), &part(&name("attn_q.bias")))?,
                    optional_vector(&mut loader, &mem, &name("attn_k.bias"), &part(&name("attn_k.bias")))?,
                    optional_vector(&mut loader, &mem, &name("attn_v.bias"), &part(&name("attn_v.bias")))?,
                ],
                q_norm: optional_vector(&mut loader, &mem, &name("attn_q_norm.weight"), &Part::All)?,
                k_norm: optional_vector(&mut loader, &mem, &name("attn_k_norm.weight"), &Part::All)?,
                o: matrix(&mut loader, &mem, &name("attn_output.weight"), &part(&name("attn_output.weight")))?,
                post_attn_norm: optional_vector(&mut loader, &mem, &name("post_attention_norm.weight"), &Part::All)?,
                ffn_norm: vector(&mut loader, &mem, &name("ffn_norm.weight"))?,
                gate: matrix(&mut loader, &mem, &name("ffn_gate.weight"), &part(&name("ffn_gate.weight")))?,
                up: matrix(&mut loader, &mem, &name("ffn_up.weight"), &part(&name("ffn_up.weight")))?,
                down: matrix(&mut loader, &mem, &name("ffn_down.weight"), &part(&name("ffn_down.weight")))?,
                post_ffn_norm: optional_vector(&mut loader, &mem, &name("post_ffw_norm.weight"), &Part::All)?,
            };
            for bias in ["attn_output.bias", "ffn_gate.bias", "ffn_up.bias", "ffn_down.bias"] {
                if loader.has(&name(bias)) {
                    return Err(EngineError::new(
                        ErrorCode::UnsupportedArchitecture,
                        format!("the graph forward path has no kernel for the bias {}", name(bias)),
                    ));
                }
            }
            config.check_attention_shape(il, layer.qkv[0].shape.rows, layer.qkv[1].shape.rows)?;
            if layer.gate.shape != layer.up.shape {
                return Err(EngineError::new(
                    ErrorCode::UnsupportedQuantization,
                    format!(
                        "{p}: ffn_gate ({:?}) and ffn_up ({:?}) differ, and the fused gate+up kernel reads both as one type",
                        layer.gate.shape, layer.up.shape
                    ),
                ));
            }
            if layer.gate.shape.k != config.n_embd || layer.down.shape.k != n_ff || layer.o.shape.k != config.n_head * config.head_dim {
                return Err(EngineError::invalid_gguf(format!("{p}: the feed-forward or output projection shapes do not match the model")));
            }
            layers.push(layer);
        }
        let weight_bytes = loader.bytes;
        let head_rows = output.as_ref().map_or(embeddings.shape.rows, |m| m.shape.rows);
        let vocab_rows = shard.map_or(config.n_vocab, |p| p.vocab.len());
        if head_rows != vocab_rows || embeddings.shape.rows != config.n_vocab {
            return Err(EngineError::invalid_gguf(format!(
                "the output head has {head_rows} rows for {vocab_rows} vocabulary rows (of {}; the table has {})",
                config.n_vocab, embeddings.shape.rows
            )));
        }

        let slot_stride = config.n_head_kv * capacity * config.head_dim;
        let layer_stride = slots * slot_stride;
        let cache_half = 2 * layer_stride * config.n_layer;
        let k_cache = mem.zeroed(cache_half)?;
        let v_cache = mem.zeroed(cache_half)?;
        let buffers = Buffers::new(&mem, &sizes, batch)?;
        let tp = match (tp, tp_layout) {
            (Some((plan, timeout)), Some(layout)) => Some(tp::TpRank::new(&ctx, &mem, plan, layout, timeout)?),
            _ => None,
        };

        let mut decoder = Self {
            config,
            ctx,
            mem,
            stream,
            kernels: Kernels { modules: Vec::new(), functions: HashMap::new() },
            sms,
            embeddings,
            output,
            output_norm,
            layers,
            inv_freq: inv,
            freq_factors,
            k_cache,
            v_cache,
            slot_stride,
            layer_stride,
            capacity,
            slots,
            buckets: buckets.clone(),
            n_ff,
            nsplit,
            buffers,
            graphs: HashMap::new(),
            kernels_per_step: 0,
            pdl,
            prefill: None,
            tp,
            weight_bytes,
            cache_bytes: 2 * cache_half,
        };
        for &rows in &buckets {
            for name in decoder.kernel_names(rows) {
                kernels.require(&name)?;
            }
        }
        if decoder.tp.is_some() {
            for name in tp::TP_KERNELS {
                kernels.require(name)?;
            }
            decoder.kernels = kernels;
            // Captured at `join`, once the peers' exchange buffers are mapped.
            return Ok(decoder);
        }
        for name in PREFILL_KERNELS {
            kernels.require(name)?;
        }
        decoder.kernels = kernels;
        decoder.prefill = Some(prefill::Prefill::new(&decoder, &prefill_sizes, chunk, gemm)?);
        trace_vram("the prefill's cuBLAS handle and stream");
        decoder.capture_all()?;
        Ok(decoder)
    }

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

    /// Enqueues one decode step for `rows` batch rows on the stream; returns the kernel count.
    /// Reads the token ids and positions from device memory, writes the next greedy token of
    /// each row over its token id and advances its position, so the same launches (or the
    /// graph captured from them) serve every step.
    fn enqueue_step(&self, rows: usize) -> EngineResult<usize> {
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
            let cache_offset = 2 * (il * self.layer_stride) as u64;
            let rope = RopeArgs {
                q: b.qkv.ptr,
                k: outs[1],
                v: outs[2],
                q_out: b.qkv.ptr,
                k_cache: self.k_cache.ptr + cache_offset,
                v_cache: self.v_cache.ptr + cache_offset,
                pos: b.pos.ptr,
                slot: b.slot.ptr,
                inv_freq: self.inv_freq[usize::from(swa && self.inv_freq.len() > 1)].ptr,
                freq_factors: ptr(&self.freq_factors),
                q_norm: ptr(&layer.q_norm),
                k_norm: ptr(&layer.k_norm),
                slot_stride: self.slot_stride as i64,
                ldq: qkv_ld,
                ldk: qkv_ld,
                ldv: qkv_ld,
                ldqo: qkv_ld,
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
    fn enqueue_head(&self, rows: usize) -> EngineResult<usize> {
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
    fn capture_all(&mut self) -> EngineResult<()> {
        for rows in self.buckets.clone() {
            self.capture(rows)?;
        }
        trace_vram("capturing the decode graphs");
        Ok(())
    }

    fn capture(&mut self, rows: usize) -> EngineResult<()> {
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
    fn bucket_for(&self, rows: usize) -> usize {
        self.buckets.iter().copied().find(|&b| b >= rows).unwrap_or_else(|| self.max_bucket())
    }

    fn max_bucket(&self) -> usize {
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
    fn input_in(&self, bucket: usize, input: &[i32]) -> EngineResult<()> {
        let (b, stream) = (&self.buffers, self.stream.cu_stream());
        cu("tokens in", unsafe { result::memcpy_htod_async(b.tokens.ptr, &input[..bucket], stream) })?;
        cu("positions in", unsafe { result::memcpy_htod_async(b.pos.ptr, &input[bucket..2 * bucket], stream) })?;
        cu("slots in", unsafe { result::memcpy_htod_async(b.slot.ptr, &input[2 * bucket..3 * bucket], stream) })
    }

    /// Waits for the step and reads each wanted row's greedy token or logits (of `rows` rows
    /// the last replay left).
    fn read_rows(&self, rows: usize, want: &[(usize, bool)]) -> EngineResult<Vec<StepOutput>> {
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

/// A captured graph. cudarc leaves `CudaGraph` !Send (graph objects are not internally
/// synchronized); the engine's mutex around the decoder serializes every use.
struct Graph(CudaGraph);
// SAFETY: only used behind the engine's `Mutex<Decoder>`, never from two threads at once.
unsafe impl Send for Graph {}

fn gib(bytes: usize) -> f64 {
    bytes as f64 / (1u64 << 30) as f64
}
