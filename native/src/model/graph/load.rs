//! Loading a graph decoder: the footprint checked against the free VRAM first, then the weights,
//! the KV cache and the step buffers, the kernels, and the decode graphs captured.

use std::collections::HashMap;
use std::io::{Read, Seek};
use std::time::Duration;

use candle_core::cuda_backend::cudarc::driver::{result, sys};
use candle_core::quantized::gguf_file::Content;
use candle_core::Device;

use super::kernels::{Kernels, PREFILL_KERNELS};
use super::plan::{self, BufferSizes, Part};
use super::weights::{inv_freq, matrix, matrix_shape, optional_vector, read_matrix, vector, Layer, Mat};
use super::{cu, gib, prefill, tp, trace_vram, Buffers, DeviceArena, DeviceBuffer, GraphDecoder};
use crate::error::{EngineError, EngineResult, ErrorCode};
use crate::model::config::{Arch, Config};
use crate::model::shard::plan::{share, ShardPlan};
use crate::model::Loader;

/// What the GPU must hold, before any of it is allocated (the `insufficient_vram` check).
struct Footprint {
    weights: usize,
    cache: usize,
    buffers: usize,
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
            kernels: Kernels::empty(),
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
}
