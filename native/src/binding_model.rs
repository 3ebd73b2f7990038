//! `Model`: a GGUF loaded by the candle engine. Loading and generating run on their own Rust
//! threads (never the JS thread, never libuv's pool); results come back through a promise
//! (`load`) or a threadsafe function (`generate`).

use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use napi::bindgen_prelude::*;
use napi::threadsafe_function::{ThreadsafeFunction, ThreadsafeFunctionCallMode};
use napi_derive::napi;

use crate::binding_batch_info::BatchInfo;
use crate::binding_chat_message::ChatMessage;
use crate::binding_generate_options::GenerateOptions;
use crate::binding_generate_result::GenerateResult;
use crate::binding_generation::Generation;
use crate::binding_generation_event::GenerationEvent;
use crate::binding_load_options::LoadOptions;
use crate::binding_memory_info::MemoryInfo;
use crate::binding_model_info::ModelInfo;
use crate::binding_native_error::{panic_message, NativeError};
use crate::engine::{self, Engine};
use crate::error::{EngineError, ErrorCode};
use crate::model::decoder::ForwardPath;

type ProgressCallback = ThreadsafeFunction<f64, (), f64, Status, false>;
type EventCallback = ThreadsafeFunction<GenerationEvent, (), GenerationEvent, Status, false>;

/// One candidate next token and its probability.
#[napi(object)]
#[derive(Debug, Clone)]
pub struct TokenProbability {
    pub token: u32,
    pub probability: f64,
}

#[napi]
pub struct Model {
    engine: Mutex<Option<Arc<Engine>>>,
    info: ModelInfo,
}

fn closed() -> NativeError {
    EngineError::new(ErrorCode::ModelClosed, "the model was closed").into()
}

#[napi]
impl Model {
    /// Loads a GGUF on a Rust thread. Resolves to the model, or to a `NativeError` value for an
    /// expected failure (invalid_gguf, unsupported_architecture, device_unavailable, ...).
    #[napi(ts_args_type = "options: LoadOptions, onProgress?: (fraction: number) => void", ts_return_type = "Promise<Model | NativeError>")]
    pub fn load(env: &Env, options: LoadOptions, on_progress: Option<ProgressCallback>) -> Result<Object<'_>> {
        let (deferred, promise) = env.create_deferred()?;
        // A bad `forward` is an expected failure (invalid_request), resolved like any other.
        let forward = options.forward.as_deref().map(ForwardPath::parse).transpose();
        let load_options = engine::LoadOptions {
            path: options.path,
            device: options.device.unwrap_or_else(|| "cpu".to_string()),
            context_size: options.context_size.map(|c| c as usize),
            threads: options.threads.map(|t| t as usize),
            // None: RBEE_CANDLE_FORWARD, else the device's default.
            forward: forward.as_ref().ok().copied().flatten(),
            tensor_parallel: None,
            parallel: options.parallel.map(|p| p as usize),
        };
        let mut load_options = load_options;
        let tensor_parallel = options.tensor_parallel.map(crate::binding_shard::tensor_parallel).transpose();
        let forward = match (forward, tensor_parallel) {
            (Err(error), _) | (_, Err(error)) => Err(error),
            (Ok(path), Ok(tp)) => {
                load_options.tensor_parallel = tp;
                Ok(path)
            }
        };
        std::thread::Builder::new()
            .name("rbee-candle-load".into())
            .spawn(move || {
                let mut last_reported = -1.0f64;
                let mut report = |fraction: f64| {
                    if let Some(callback) = &on_progress {
                        if fraction - last_reported >= 0.02 || fraction >= 1.0 {
                            last_reported = fraction;
                            callback.call(fraction, ThreadsafeFunctionCallMode::NonBlocking);
                        }
                    }
                };
                let loaded = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| match &forward {
                    Err(error) => Err(error.clone()),
                    Ok(_) => Engine::load(&load_options, &mut report),
                }));
                deferred.resolve(move |_env| {
                    Ok(match loaded {
                        Ok(Ok(engine)) => {
                            let info = ModelInfo::from(&engine.info);
                            Either::A(Model { engine: Mutex::new(Some(Arc::new(engine))), info })
                        }
                        Ok(Err(error)) => Either::B(NativeError::from(error)),
                        Err(panic) => Either::B(NativeError::internal(format!("the model load panicked: {}", panic_message(panic)))),
                    })
                });
            })
            .map_err(|e| Error::from_reason(format!("cannot start the load thread: {e}")))?;
        Ok(promise)
    }

    #[napi(getter)]
    pub fn info(&self) -> ModelInfo {
        self.info.clone()
    }

    fn engine(&self) -> std::result::Result<Arc<Engine>, NativeError> {
        self.engine.lock().unwrap_or_else(|p| p.into_inner()).clone().ok_or_else(closed)
    }

    /// Text to token ids, as llama_tokenize: `addSpecial` adds the BOS the model asks for,
    /// `parseSpecial` turns special-token text (`<start_of_turn>`) into those tokens.
    #[napi(catch_unwind)]
    pub fn tokenize(&self, text: String, add_special: Option<bool>, parse_special: Option<bool>) -> Either<Uint32Array, NativeError> {
        match self.engine() {
            Ok(engine) => Either::A(Uint32Array::new(engine.tokenizer.encode(&text, add_special.unwrap_or(true), parse_special.unwrap_or(false)))),
            Err(error) => Either::B(error),
        }
    }

    /// Token ids to text; `special` includes control tokens' text.
    #[napi(catch_unwind)]
    pub fn detokenize(&self, tokens: Vec<u32>, special: Option<bool>) -> Either<String, NativeError> {
        match self.engine() {
            Ok(engine) => Either::A(engine.tokenizer.decode(&tokens, special.unwrap_or(false))),
            Err(error) => Either::B(error),
        }
    }

    /// The GGUF's chat template applied to messages, with the generation prompt.
    #[napi(catch_unwind)]
    pub fn apply_chat_template(&self, messages: Vec<ChatMessage>) -> Either<String, NativeError> {
        let messages: Vec<crate::chat_template::ChatMessage> = messages.into_iter().map(Into::into).collect();
        match self.engine().and_then(|engine| engine.apply_chat_template(&messages).map_err(NativeError::from)) {
            Ok(text) => Either::A(text),
            Err(error) => Either::B(error),
        }
    }

    /// Starts a generation on its own thread. `onEvent` gets `text` events as the answer grows,
    /// then one `done` (with the result) or `error` event. Invalid options and a closed model are
    /// returned at once as a `NativeError` value.
    #[napi(catch_unwind, ts_args_type = "options: GenerateOptions, onEvent: (event: GenerationEvent) => void")]
    pub fn generate(&self, options: GenerateOptions, on_event: EventCallback) -> Either<Generation, NativeError> {
        let engine = match self.engine() {
            Ok(engine) => engine,
            Err(error) => return Either::B(error),
        };
        let request = match options.into_request() {
            Ok(request) => request,
            Err(error) => return Either::B(error.into()),
        };
        let cancelled = Arc::new(AtomicBool::new(false));
        let flag = cancelled.clone();
        let spawned = std::thread::Builder::new().name("rbee-candle-generate".into()).spawn(move || {
            let started = Instant::now();
            let mut prompt_ms = 0.0;
            let mut first = true;
            let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                engine.generate(
                    &request,
                    &flag,
                    &mut |text| {
                        on_event.call(GenerationEvent::text(text), ThreadsafeFunctionCallMode::NonBlocking);
                    },
                    &mut |_token| {
                        if first {
                            first = false;
                            prompt_ms = started.elapsed().as_secs_f64() * 1000.0;
                        }
                    },
                )
            }));
            let total_ms = started.elapsed().as_secs_f64() * 1000.0;
            let event = match outcome {
                Ok(Ok(outcome)) => GenerationEvent::done(GenerateResult::from_outcome(outcome, prompt_ms, total_ms)),
                Ok(Err(error)) => GenerationEvent::error(error.into()),
                Err(panic) => GenerationEvent::error(NativeError::internal(format!("the generation panicked: {}", panic_message(panic)))),
            };
            on_event.call(event, ThreadsafeFunctionCallMode::NonBlocking);
        });
        match spawned {
            Ok(_) => Either::A(Generation { cancelled }),
            Err(error) => Either::B(NativeError::internal(format!("cannot start the generation thread: {error}"))),
        }
    }

    /// Teacher forcing, for comparisons with other engines: evaluates `prompt` (token ids, as
    /// `tokenize` gives them) and then each of `forced` in turn, resolving to the `top` most
    /// probable next tokens before each forced token. Runs on its own thread like `generate`.
    #[napi(ts_return_type = "Promise<TokenProbability[][] | NativeError>")]
    pub fn next_token_probabilities<'env>(&self, env: &'env Env, prompt: Vec<u32>, forced: Vec<u32>, top: u32) -> Result<Object<'env>> {
        let (deferred, promise) = env.create_deferred()?;
        let engine = self.engine();
        std::thread::Builder::new()
            .name("rbee-candle-score".into())
            .spawn(move || {
                let outcome = engine
                    .map(|engine| std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| engine.next_token_probabilities(&prompt, &forced, top as usize))));
                deferred.resolve(move |_env| {
                    Ok(match outcome {
                        Ok(Ok(Ok(distributions))) => Either::A(
                            distributions
                                .into_iter()
                                .map(|pairs| pairs.into_iter().map(|(token, probability)| TokenProbability { token, probability }).collect())
                                .collect::<Vec<Vec<TokenProbability>>>(),
                        ),
                        Ok(Ok(Err(error))) => Either::B(NativeError::from(error)),
                        Ok(Err(panic)) => Either::B(NativeError::internal(format!("the evaluation panicked: {}", panic_message(panic)))),
                        Err(error) => Either::B(error),
                    })
                });
            })
            .map_err(|e| Error::from_reason(format!("cannot start the evaluation thread: {e}")))?;
        Ok(promise)
    }

    /// The batch now: slots, slots in use, requests waiting for one (a closed model: all 0).
    #[napi]
    pub fn batch(&self) -> BatchInfo {
        let stats = self.engine().ok().map(|engine| engine.batch());
        BatchInfo { slots: stats.map_or(0, |s| s.slots as u32), active: stats.map_or(0, |s| s.active as u32), waiting: stats.map_or(0, |s| s.waiting as u32) }
    }

    /// Resident memory of the process, the model's own bytes, and VRAM on a CUDA device.
    #[napi]
    pub fn memory(&self) -> MemoryInfo {
        let vram = self.engine().ok().and_then(|engine| crate::memory::vram_bytes(&engine.device));
        MemoryInfo {
            rss: crate::memory::rss_bytes() as f64,
            vram_used: vram.map(|(used, _)| used as f64),
            vram_total: vram.map(|(_, total)| total as f64),
            weight_bytes: self.info.weight_bytes,
            kv_cache_bytes: self.info.kv_cache_bytes,
        }
    }

    /// Releases the model. A generation still running finishes its current token, ends as
    /// cancelled if it was cancelled, and the memory goes when it does.
    #[napi]
    pub fn close(&self) {
        self.engine.lock().unwrap_or_else(|p| p.into_inner()).take();
    }

    #[napi(getter)]
    pub fn closed(&self) -> bool {
        self.engine.lock().unwrap_or_else(|p| p.into_inner()).is_none()
    }
}
