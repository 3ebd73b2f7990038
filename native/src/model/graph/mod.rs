//! The CUDA graph decode path (issue 11): rbee's own kernels (native/kernels, compiled by
//! build.rs into fatbins embedded in the .node) run a whole decode step — embedding, every
//! layer, the output head and the greedy argmax — captured once as one CUDA graph and replayed
//! per token. Weights are the GGUF's quantized blocks uploaded as they are; activations, logits
//! and an f16 KV cache are static device buffers allocated at load, so a step allocates nothing
//! and the host only copies a token id and a position in and one token id (or the logits) out.
//!
//! `args` and `plan` are plain data (tested without a GPU); `decoder` is the CUDA part.

pub mod args;
pub mod plan;

#[cfg(feature = "cuda")]
mod decoder;
#[cfg(feature = "cuda")]
pub use decoder::GraphDecoder;
