//! `Shard`: one rank (1..world) of a tensor-parallel group on the CPU. It loads only its slice of
//! the GGUF and listens on the endpoint the hive gave it (`open`), then serves its coordinator's
//! steps until the coordinator closes the group or the group fails (`serve`). It answers no
//! requests itself: rank 0 (a `Model` loaded with `tensorParallel`) owns the tokenizer, sampling
//! and the HTTP endpoint.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use napi::bindgen_prelude::*;
use napi::threadsafe_function::{ThreadsafeFunction, ThreadsafeFunctionCallMode};
use napi_derive::napi;

use crate::binding_load_options::TensorParallelOptions;
use crate::binding_memory_info::MemoryInfo;
use crate::binding_native_error::{panic_message, NativeError};
use crate::error::{EngineError, EngineResult, ErrorCode};
use crate::model::shard::launch::{open_shard, OpenShard, ShardOptions as EngineShardOptions, TensorParallel, DEFAULT_TIMEOUT, DEFAULT_WAIT};
use crate::model::shard::plan::MAX_WORLD;

type ProgressCallback = ThreadsafeFunction<f64, (), f64, Status, false>;

#[napi(object)]
#[derive(Debug, Clone)]
pub struct ShardOptions {
    /// The GGUF file (each rank maps it and copies out only its slice).
    pub path: String,
    /// 1 to world - 1 (rank 0 is the coordinator).
    pub rank: u32,
    pub world: u32,
    /// Where to listen for the coordinator: 127.0.0.1:PORT.
    pub endpoint: String,
    /// The group's secret; the coordinator must prove it.
    pub secret: String,
    /// Must be the coordinator's (default min(the model's training context, 4096)).
    pub context_size: Option<u32>,
    /// "cpu" (default) or "cuda:N": a CUDA shard runs the graph path on that GPU.
    pub device: Option<String>,
    /// Streams its coordinator serves (default 1): a CUDA shard's graphs must be its coordinator's.
    pub parallel: Option<u32>,
    pub threads: Option<u32>,
    /// The deadline of each collective (default 5000 ms).
    pub timeout_ms: Option<u32>,
    /// How long to wait for the coordinator to join (default 300000 ms).
    pub wait_ms: Option<u32>,
}

fn duration(ms: Option<u32>, default: Duration, field: &str) -> EngineResult<Duration> {
    match ms {
        None => Ok(default),
        Some(ms) if (1..=3_600_000).contains(&ms) => Ok(Duration::from_millis(ms as u64)),
        Some(ms) => Err(EngineError::invalid_request(format!("{field}: {ms} is outside 1..3600000 ms"))),
    }
}

/// The load options' `tensorParallel` as the engine's.
pub fn tensor_parallel(options: TensorParallelOptions) -> EngineResult<TensorParallel> {
    match (options.shards, options.blocks) {
        (Some(shards), None) => {
            if shards.is_empty() || shards.len() >= MAX_WORLD {
                return Err(EngineError::invalid_request(format!("tensorParallel.shards: 1 to {} endpoints", MAX_WORLD - 1)));
            }
            let secret = options.secret.ok_or_else(|| EngineError::invalid_request("tensorParallel.secret is required with shards"))?;
            Ok(TensorParallel::Coordinator {
                shards,
                secret,
                timeout: duration(options.timeout_ms, DEFAULT_TIMEOUT, "tensorParallel.timeoutMs")?,
                wait: duration(options.wait_ms, DEFAULT_WAIT, "tensorParallel.waitMs")?,
            })
        }
        (None, Some(blocks)) if (1..=MAX_WORLD as u32).contains(&blocks) => Ok(TensorParallel::Reference { blocks: blocks as usize }),
        (None, Some(blocks)) => Err(EngineError::invalid_request(format!("tensorParallel.blocks: {blocks} is outside 1..{MAX_WORLD}"))),
        _ => Err(EngineError::invalid_request("tensorParallel: either shards (a coordinator) or blocks (a reference), not both")),
    }
}

#[napi]
pub struct Shard {
    open: Arc<Mutex<Option<OpenShard>>>,
    cancel: Arc<AtomicBool>,
    weight_bytes: f64,
    cache_bytes: f64,
    device: candle_core::Device,
}

#[napi]
impl Shard {
    /// Loads this rank's slice and starts listening, on a Rust thread.
    #[napi(ts_args_type = "options: ShardOptions, onProgress?: (fraction: number) => void", ts_return_type = "Promise<Shard | NativeError>")]
    pub fn open(env: &Env, options: ShardOptions, on_progress: Option<ProgressCallback>) -> Result<Object<'_>> {
        let (deferred, promise) = env.create_deferred()?;
        std::thread::Builder::new()
            .name("rbee-candle-shard-load".into())
            .spawn(move || {
                let opened = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| -> EngineResult<OpenShard> {
                    if options.world < 2 || options.world as usize > MAX_WORLD {
                        return Err(EngineError::invalid_request(format!("world: {} is outside 2..{MAX_WORLD}", options.world)));
                    }
                    crate::engine::configure_threads(options.threads.map(|t| t as usize));
                    let engine_options = EngineShardOptions {
                        path: options.path,
                        rank: options.rank as usize,
                        world: options.world as usize,
                        endpoint: options.endpoint,
                        secret: options.secret,
                        context_size: options.context_size.map(|c| c as usize),
                        device: options.device.unwrap_or_else(|| "cpu".to_string()),
                        parallel: match options.parallel {
                            None => 1,
                            Some(p) if (1..=crate::engine::MAX_PARALLEL as u32).contains(&p) => p as usize,
                            Some(p) => return Err(EngineError::invalid_request(format!("parallel: {p} is outside 1..{}", crate::engine::MAX_PARALLEL))),
                        },
                        timeout: duration(options.timeout_ms, DEFAULT_TIMEOUT, "timeoutMs")?,
                        wait: duration(options.wait_ms, DEFAULT_WAIT, "waitMs")?,
                    };
                    open_shard(engine_options, &mut |fraction| {
                        if let Some(callback) = &on_progress {
                            callback.call(fraction, ThreadsafeFunctionCallMode::NonBlocking);
                        }
                    })
                }));
                deferred.resolve(move |_env| {
                    Ok(match opened {
                        Ok(Ok(shard)) => Either::A(Shard {
                            weight_bytes: shard.weight_bytes as f64,
                            cache_bytes: shard.cache_bytes as f64,
                            device: shard.device.clone(),
                            open: Arc::new(Mutex::new(Some(shard))),
                            cancel: Arc::new(AtomicBool::new(false)),
                        }),
                        Ok(Err(error)) => Either::B(NativeError::from(error)),
                        Err(panic) => Either::B(NativeError::internal(format!("the shard load panicked: {}", panic_message(panic)))),
                    })
                });
            })
            .map_err(|e| Error::from_reason(format!("cannot start the shard load thread: {e}")))?;
        Ok(promise)
    }

    /// Waits for the coordinator and runs its steps, on a Rust thread. Resolves to null when the
    /// coordinator closed the group, or to the `NativeError` that ended it (a rank gone, a
    /// collective past its deadline). A shard serves once.
    #[napi(ts_return_type = "Promise<NativeError | null>")]
    pub fn serve<'env>(&self, env: &'env Env) -> Result<Object<'env>> {
        let (deferred, promise) = env.create_deferred()?;
        let shard = self.open.lock().unwrap_or_else(|p| p.into_inner()).take();
        let cancel = self.cancel.clone();
        std::thread::Builder::new()
            .name("rbee-candle-shard".into())
            .spawn(move || {
                let outcome = match shard {
                    None => Err(EngineError::new(ErrorCode::ModelClosed, "the shard is closed or already serving")),
                    Some(shard) => std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| shard.serve(&cancel)))
                        .unwrap_or_else(|panic| Err(EngineError::internal(format!("the shard panicked: {}", panic_message(panic))))),
                };
                deferred.resolve(move |_env| Ok(outcome.err().map(NativeError::from)));
            })
            .map_err(|e| Error::from_reason(format!("cannot start the shard thread: {e}")))?;
        Ok(promise)
    }

    /// Stops waiting for a coordinator; a shard already serving ends with its process.
    #[napi]
    pub fn close(&self) {
        self.cancel.store(true, Ordering::Relaxed);
        self.open.lock().unwrap_or_else(|p| p.into_inner()).take();
    }

    /// Bytes of weights this rank copied out of the file.
    #[napi(getter)]
    pub fn weight_bytes(&self) -> f64 {
        self.weight_bytes
    }

    #[napi(getter)]
    pub fn cache_bytes(&self) -> f64 {
        self.cache_bytes
    }

    /// Resident memory of the process, the rank's own bytes, and its GPU's memory on a CUDA device.
    #[napi]
    pub fn memory(&self) -> MemoryInfo {
        let vram = crate::memory::vram_bytes(&self.device);
        MemoryInfo {
            rss: crate::memory::rss_bytes() as f64,
            vram_used: vram.map(|(used, _)| used as f64),
            vram_total: vram.map(|(_, total)| total as f64),
            weight_bytes: self.weight_bytes,
            kv_cache_bytes: self.cache_bytes,
        }
    }
}

/// Whether the GGUF at `path` splits over `world` ranks: null, or the `NativeError` (invalid_request)
/// naming the tensor and shape that does not split. Reads the header only.
#[napi(ts_return_type = "NativeError | null")]
// Only JavaScript calls it, and napi registers it outside test builds.
#[cfg_attr(test, allow(dead_code))]
pub fn check_tensor_parallel(path: String, world: u32) -> Option<NativeError> {
    let checked = (|| -> EngineResult<()> {
        let file = crate::gguf::open(std::path::Path::new(&path))?;
        let config = crate::model::config::Config::from_gguf(&file.content.metadata, &file.content.tensor_infos)?;
        for rank in 0..world as usize {
            crate::model::shard::plan::ShardPlan::new(&config, &file.content.tensor_infos, rank, world as usize)?;
        }
        Ok(())
    })();
    checked.err().map(NativeError::from)
}
