//! Which forward pass runs a model. The ggml path (`Transformer`) follows llama.cpp's CPU kernels
//! to the bit and only runs on the CPU; the tensor path (`TensorTransformer`) is built from Candle
//! tensor ops and runs on any Candle device; the graph path (`graph::GraphDecoder`, CUDA builds
//! only) runs rbee's own kernels as one CUDA graph per decode step. CUDA devices take the graph
//! path unless another is asked for: on an H100 it decodes 1.15x llama.cpp's CUDA build on both
//! bench models (bench/results/2026-12-06-gpu-h100-issue11-same-run.md), twice the tensor path.
//! A model the graph path has no kernels for (a quant type, head size or bias it lacks) falls back
//! to the tensor path when the graph path was only the default, and fails with the graph path's
//! error when it was asked for. Metal takes the tensor path; the CPU takes the ggml path unless the
//! tensor path is asked for (to test it where there is no GPU).

use std::io::{Read, Seek};

use candle_core::quantized::gguf_file::Content;
use candle_core::Device;

use super::config::Config;
#[cfg(feature = "cuda")]
use super::graph::GraphDecoder;
use super::shard::transformer::ShardedTransformer;
use super::tensor::TensorTransformer;
use super::Transformer;
use crate::error::{EngineError, EngineResult, ErrorCode};

/// Read when the load options do not name a path: `ggml`, `tensor` or `graph`.
pub const FORWARD_ENV: &str = "RBEE_CANDLE_FORWARD";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ForwardPath {
    /// llama.cpp's CPU kernels, replicated (CPU only).
    Ggml,
    /// Candle tensor ops (any device).
    Tensor,
    /// rbee's CUDA kernels, one CUDA graph per decode step (CUDA only).
    Graph,
}

impl ForwardPath {
    pub fn as_str(self) -> &'static str {
        match self {
            ForwardPath::Ggml => "ggml",
            ForwardPath::Tensor => "tensor",
            ForwardPath::Graph => "graph",
        }
    }

    pub fn parse(value: &str) -> EngineResult<Self> {
        match value {
            "ggml" => Ok(ForwardPath::Ggml),
            "tensor" => Ok(ForwardPath::Tensor),
            "graph" => Ok(ForwardPath::Graph),
            other => Err(EngineError::invalid_request(format!("unknown forward path \"{other}\": expected ggml, tensor or graph"))),
        }
    }

    /// The path for `device`: `requested`, else `RBEE_CANDLE_FORWARD`, else the device's default.
    pub fn select(device: &Device, requested: Option<ForwardPath>) -> EngineResult<Self> {
        Self::resolve(device, requested).map(|(path, _)| path)
    }

    /// `select`, and whether the path was asked for (options or `RBEE_CANDLE_FORWARD`) rather
    /// than the device's default: a default graph path may fall back to the tensor path.
    pub fn resolve(device: &Device, requested: Option<ForwardPath>) -> EngineResult<(Self, bool)> {
        let requested = match requested {
            Some(path) => Some(path),
            None => match std::env::var(FORWARD_ENV) {
                Ok(value) if !value.is_empty() => Some(Self::parse(&value).map_err(|e| EngineError::invalid_request(format!("{FORWARD_ENV}: {}", e.message)))?),
                _ => None,
            },
        };
        match (requested, device.is_cpu()) {
            (Some(ForwardPath::Ggml), false) => Err(EngineError::new(
                ErrorCode::DeviceUnavailable,
                "the ggml forward path runs on the CPU only: use the graph path (the CUDA default) or the tensor path on a GPU",
            )),
            (Some(ForwardPath::Graph), _) if !device.is_cuda() => Err(EngineError::new(
                ErrorCode::DeviceUnavailable,
                "the graph forward path runs on a CUDA device (cuda:N) only: use ggml on the CPU, tensor on Metal",
            )),
            (Some(path), _) => Ok((path, true)),
            (None, true) => Ok((ForwardPath::Ggml, false)),
            (None, false) if device.is_cuda() => Ok((ForwardPath::Graph, false)),
            (None, false) => Ok((ForwardPath::Tensor, false)),
        }
    }

    /// Whether a failed load of the default graph path may be retried on the tensor path: the
    /// graph path refused the model (no kernel for a type, shape or bias), before allocating.
    pub fn falls_back(&self, asked: bool, error: &EngineError) -> bool {
        *self == ForwardPath::Graph && !asked && matches!(error.code, ErrorCode::UnsupportedQuantization | ErrorCode::UnsupportedArchitecture)
    }
}

/// One slot's share of a batched step: `tokens` run at positions `start..` of that slot's KV
/// cache (which must hold `0..start`).
#[derive(Debug, Clone, Copy)]
pub struct Segment<'a> {
    pub slot: usize,
    pub tokens: &'a [u32],
    pub start: usize,
}

/// What a step gives a segment: the greedy token picked on the device, or the logits.
#[derive(Debug, Clone, PartialEq)]
pub enum StepOutput {
    Token(u32),
    Logits(Vec<f32>),
}

/// A loaded model behind either forward path; the engine sees one interface.
///
/// Continuous batching goes through `slots` and `step`: a path that serves several streams keeps
/// one KV cache per slot and runs one step for all of them. The ggml path batches (each weight
/// read once per step); the tensor path runs the segments of a step one after another (per-slot
/// caches, so streams interleave, but no shared weight reads yet); the graph path runs a step's
/// rows (each with its own slot) through one captured graph per batch bucket.
pub enum Decoder {
    Ggml(Transformer),
    Tensor(TensorTransformer),
    #[cfg(feature = "cuda")]
    Graph(Box<GraphDecoder>),
    /// The ggml path, one rank's slice of it (rank 0 of a tensor-parallel group, or its
    /// single-process reference).
    Sharded(Box<ShardedTransformer>),
}

impl Decoder {
    #[allow(clippy::too_many_arguments)]
    pub fn load<R: Read + Seek>(
        path: ForwardPath,
        config: Config,
        content: &Content,
        reader: &mut R,
        device: &Device,
        context_size: usize,
        slots: usize,
        progress: &mut dyn FnMut(f64),
    ) -> EngineResult<Self> {
        Ok(match path {
            ForwardPath::Ggml => Decoder::Ggml(Transformer::load(config, content, reader, device, context_size, slots, progress)?),
            ForwardPath::Tensor => Decoder::Tensor(TensorTransformer::load(config, content, reader, device, context_size, slots, progress)?),
            #[cfg(feature = "cuda")]
            ForwardPath::Graph => Decoder::Graph(Box::new(GraphDecoder::load(config, content, reader, device, context_size, slots, None, progress)?)),
            #[cfg(not(feature = "cuda"))]
            ForwardPath::Graph => {
                return Err(EngineError::new(
                    ErrorCode::DeviceUnavailable,
                    "the graph forward path needs a CUDA build of the candle engine (scripts/build-native-cuda.sh)",
                ))
            }
        })
    }

    pub fn path(&self) -> ForwardPath {
        match self {
            Decoder::Ggml(_) | Decoder::Sharded(_) => ForwardPath::Ggml,
            Decoder::Tensor(_) => ForwardPath::Tensor,
            #[cfg(feature = "cuda")]
            Decoder::Graph(_) => ForwardPath::Graph,
        }
    }

    pub fn context_size(&self) -> usize {
        match self {
            Decoder::Ggml(model) => model.context_size(),
            Decoder::Sharded(model) => model.context_size(),
            Decoder::Tensor(model) => model.context_size(),
            #[cfg(feature = "cuda")]
            Decoder::Graph(model) => model.context_size(),
        }
    }

    pub fn cache_bytes(&self) -> usize {
        match self {
            Decoder::Ggml(model) => model.cache_bytes(),
            Decoder::Sharded(model) => model.cache_bytes(),
            Decoder::Tensor(model) => model.cache_bytes(),
            #[cfg(feature = "cuda")]
            Decoder::Graph(model) => model.cache_bytes(),
        }
    }

    pub fn weight_bytes(&self) -> usize {
        match self {
            Decoder::Ggml(model) => model.weight_bytes,
            Decoder::Sharded(model) => model.weight_bytes,
            Decoder::Tensor(model) => model.weight_bytes,
            #[cfg(feature = "cuda")]
            Decoder::Graph(model) => model.weight_bytes,
        }
    }

    /// Streams this model can hold at once (one KV cache each): what the load asked for, 1 on a
    /// tensor-parallel rank.
    pub fn slots(&self) -> usize {
        match self {
            Decoder::Ggml(model) => model.slots(),
            Decoder::Tensor(model) => model.slots(),
            // A tensor-parallel rank runs one stream: its shards step in lockstep on the same ids.
            Decoder::Sharded(_) => 1,
            #[cfg(feature = "cuda")]
            Decoder::Graph(model) => model.slots(),
        }
    }

    /// One step over several slots: the logits of each segment's last token, in segment order.
    pub fn step(&mut self, segments: &[Segment]) -> EngineResult<Vec<Vec<f32>>> {
        match self {
            Decoder::Ggml(model) => model.step(segments),
            Decoder::Tensor(model) => model.step(segments),
            Decoder::Sharded(model) => {
                super::check_segments(segments, 1, model.context_size())?;
                Ok(vec![model.forward(segments[0].tokens, segments[0].start)?])
            }
            #[cfg(feature = "cuda")]
            Decoder::Graph(_) => {
                let greedy = vec![false; segments.len()];
                self.step_outputs(segments, &greedy)?
                    .into_iter()
                    .map(|out| match out {
                        StepOutput::Logits(logits) => Ok(logits),
                        StepOutput::Token(_) => Err(EngineError::internal("the step gave a token for logits")),
                    })
                    .collect()
            }
        }
    }

    /// `step` where segment i wants only its greedy token when `greedy[i]`: picked on the device
    /// where the path can (the graph path; no logits copied out for it), else the logits' first
    /// maximum. The other segments get their logits.
    pub fn step_outputs(&mut self, segments: &[Segment], greedy: &[bool]) -> EngineResult<Vec<StepOutput>> {
        #[cfg(feature = "cuda")]
        if let Decoder::Graph(model) = self {
            super::check_segments(segments, model.slots(), model.context_size())?;
            return model.step(segments, greedy);
        }
        let all = self.step(segments)?;
        Ok(all
            .into_iter()
            .zip(greedy.iter().copied().chain(std::iter::repeat(false)))
            .map(|(logits, greedy)| if greedy { StepOutput::Token(crate::sampling::argmax(&logits)) } else { StepOutput::Logits(logits) })
            .collect())
    }

    /// Runs `tokens` at positions `start..` of slot 0 (the cache must hold `0..start`) and
    /// returns the logits of the last one.
    pub fn forward(&mut self, tokens: &[u32], start: usize) -> EngineResult<Vec<f32>> {
        match self {
            Decoder::Ggml(model) => model.forward(tokens, start),
            Decoder::Sharded(model) => model.forward(tokens, start),
            Decoder::Tensor(model) => model.forward(tokens, start),
            #[cfg(feature = "cuda")]
            Decoder::Graph(model) => model.forward(tokens, start),
        }
    }

    /// Whether `forward_greedy` picks the greedy token on the device (no logits copied out).
    pub fn has_device_greedy(&self) -> bool {
        #[cfg(feature = "cuda")]
        if let Decoder::Graph(_) = self {
            return true;
        }
        false
    }

    /// The greedy next token after `tokens` at `start..`: picked on the device where the path
    /// can, else the first maximum of `forward`'s logits (the sampler's greedy rule).
    pub fn forward_greedy(&mut self, tokens: &[u32], start: usize) -> EngineResult<u32> {
        match self {
            #[cfg(feature = "cuda")]
            Decoder::Graph(model) => model.forward_greedy(tokens, start),
            _ => {
                let logits = self.forward(tokens, start)?;
                Ok(crate::sampling::argmax(&logits))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_graph_path_is_named_and_refused_off_cuda() {
        assert_eq!(ForwardPath::parse("graph").unwrap(), ForwardPath::Graph);
        assert_eq!(ForwardPath::Graph.as_str(), "graph");
        let unknown = ForwardPath::parse("cuda-graph").unwrap_err();
        assert_eq!(unknown.code, ErrorCode::InvalidRequest);
        assert!(unknown.message.contains("ggml, tensor or graph"), "{}", unknown.message);
        // Explicitly asked for on the CPU: a clear device error, not a silent fallback.
        let error = ForwardPath::select(&Device::Cpu, Some(ForwardPath::Graph)).unwrap_err();
        assert_eq!(error.code, ErrorCode::DeviceUnavailable);
        assert!(error.message.contains("CUDA"), "{}", error.message);
        // The CPU default stays the ggml path.
        assert_eq!(ForwardPath::select(&Device::Cpu, Some(ForwardPath::Ggml)).unwrap(), ForwardPath::Ggml);
    }

    #[test]
    fn only_a_default_graph_path_that_refuses_the_model_falls_back_to_the_tensor_path() {
        let no_kernel = EngineError::new(ErrorCode::UnsupportedQuantization, "tensor blk.0.attn_q.weight is Q3K");
        let no_shape = EngineError::new(ErrorCode::UnsupportedArchitecture, "head size 96");
        let no_room = EngineError::new(ErrorCode::InsufficientVram, "the model needs 9 GiB");
        assert!(ForwardPath::Graph.falls_back(false, &no_kernel));
        assert!(ForwardPath::Graph.falls_back(false, &no_shape));
        // Asked for (options or RBEE_CANDLE_FORWARD): the graph path's own error.
        assert!(!ForwardPath::Graph.falls_back(true, &no_kernel));
        // A model that does not fit fails as insufficient_vram whatever the path.
        assert!(!ForwardPath::Graph.falls_back(false, &no_room));
        assert!(!ForwardPath::Tensor.falls_back(false, &no_kernel));
        // Asked for, or the device's default: resolve tells them apart.
        assert_eq!(ForwardPath::resolve(&Device::Cpu, Some(ForwardPath::Tensor)).unwrap(), (ForwardPath::Tensor, true));
    }
}
