//! rbee's bespoke worker engine: GGUF models run with Candle, exposed to Node through napi-rs.
//! The engine (`engine`, `model`, `tokenizer`, ...) is plain Rust, tested with `cargo test`;
//! the `binding_*` modules are the napi surface, one exported type per file.

pub mod chat_template;
pub mod engine;
pub mod error;
pub mod ggml_math;
pub mod gguf;
pub mod memory;
pub mod model;
pub mod sampling;
pub mod scheduler;
pub mod stop;
pub mod tokenizer;

mod binding_backends;
mod binding_batch_info;
mod binding_chat_message;
mod binding_generate_options;
mod binding_generate_result;
mod binding_generation;
mod binding_generation_event;
mod binding_load_options;
mod binding_memory_info;
mod binding_model;
mod binding_model_info;
mod binding_native_error;
mod binding_shard;
