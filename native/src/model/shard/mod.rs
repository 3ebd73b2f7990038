//! Tensor parallelism on the ggml (CPU) path: one model split over `world` rank processes, each
//! reading only its slice of the GGUF (`source`), planned so that every rank holds whole heads
//! (`plan`), computing its slice of each layer (`transformer`) and exchanging activations through
//! a communicator with a deadline on every collective (`comm`).
//!
//! Exactness. Column-parallel layers (Q/K/V, gate/up, the vocabulary rows of the embeddings and
//! the output head) compute every output exactly as one process does: the same kernel over the
//! same input row. Row-parallel layers (O, down) cannot: each rank sums its own input columns, and
//! float addition does not reassociate. What this module guarantees instead is a *fixed* order:
//! the partial sums of the ranks are added in rank order, `((p0 + p1) + p2) + ...`, on every rank
//! alike (all-gather, then the same local sum), and a single process can compute the very same
//! numbers by splitting its O and down matrices into as many column blocks (`blocks` in
//! `ShardedTransformer::load`). A group of R ranks is therefore bit-identical to one process with
//! R blocks, and one process with 1 block is bit-identical to the plain ggml path (tests.rs shows
//! both); against the plain path a group differs only by that reassociation.

pub mod comm;
pub mod launch;
pub mod plan;
pub mod source;
pub mod transformer;

#[cfg(test)]
mod tests;
