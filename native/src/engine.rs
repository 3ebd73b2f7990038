//! The engine without napi: load a GGUF onto a device, turn a prompt (raw text or chat messages)
//! into tokens, and generate with streaming, stop strings, sampling and cancellation. The napi
//! binding runs `generate` on its own thread; everything here is synchronous and testable.
//! Generations run through the model's scheduler (`scheduler`): up to `parallel` at once,
//! batched step by step.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::time::Duration;

use candle_core::Device;

use crate::chat_template::{ChatMessage, ChatTemplate};
use crate::error::{EngineError, EngineResult, ErrorCode};
use crate::gguf::{self, Metadata};
use crate::model::config::Config;
use crate::model::decoder::{Decoder, ForwardPath};
use crate::sampling::SamplingParams;
use crate::scheduler::{BatchStats, Event, Job, Scheduler};
use crate::tokenizer::Tokenizer;

/// llama.cpp's default batch: prompts are evaluated in slices of this many tokens, which keeps
/// the numerics of long prompts the same as llama.cpp's and lets a cancel land between slices.
pub const PREFILL_BATCH: usize = 512;

#[derive(Debug, Clone)]
pub struct LoadOptions {
    pub path: String,
    pub device: String,
    pub context_size: Option<usize>,
    pub threads: Option<usize>,
    /// None: `RBEE_CANDLE_FORWARD`, else the ggml path on the CPU and the tensor path on GPUs.
    pub forward: Option<ForwardPath>,
    /// Rank 0 of a tensor-parallel group (or its single-process reference): the ggml path, sharded.
    pub tensor_parallel: Option<crate::model::shard::launch::TensorParallel>,
    /// Streams served at once (one KV cache of `context_size` each); None or 0: one. A
    /// tensor-parallel rank serves one, whatever is asked (`ModelInfo::parallel` says what it got).
    pub parallel: Option<usize>,
}

/// The most streams one model serves at once: each holds a whole KV cache.
pub const MAX_PARALLEL: usize = 256;

#[derive(Debug, Clone)]
pub struct ModelInfo {
    pub architecture: String,
    pub name: Option<String>,
    pub device: String,
    /// The forward pass this model runs with.
    pub forward: ForwardPath,
    pub context_size: usize,
    pub train_context_size: usize,
    pub vocab_size: usize,
    pub layers: usize,
    pub embedding_size: usize,
    pub bos_token: Option<u32>,
    pub eos_token: Option<u32>,
    pub eog_tokens: Vec<u32>,
    pub tokenizer: String,
    pub has_chat_template: bool,
    pub weight_bytes: u64,
    pub kv_cache_bytes: u64,
    pub file_bytes: u64,
    /// Streams served at once (slots, one KV cache each).
    pub parallel: usize,
}

#[derive(Debug, Clone)]
pub enum Prompt {
    /// Raw text, continued as is (BOS added if the model wants one; special tokens not parsed).
    Text(String),
    /// Chat messages through the GGUF's chat template (special tokens parsed).
    Chat(Vec<ChatMessage>),
    /// Token ids, evaluated as given.
    Tokens(Vec<u32>),
}

#[derive(Debug, Clone)]
pub struct GenerateRequest {
    pub prompt: Prompt,
    pub max_tokens: usize,
    pub sampling: SamplingParams,
    pub stop: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FinishReason {
    Stop,
    Length,
    Cancelled,
}

impl FinishReason {
    pub fn as_str(self) -> &'static str {
        match self {
            FinishReason::Stop => "stop",
            FinishReason::Length => "length",
            FinishReason::Cancelled => "cancelled",
        }
    }
}

#[derive(Debug, Clone)]
pub struct GenerateOutcome {
    pub text: String,
    pub tokens: Vec<u32>,
    pub prompt_tokens: usize,
    pub finish_reason: FinishReason,
}

/// A loaded model. The tokenizer, template and info are read-only and usable from any thread
/// while a generation runs; the decoder (weights and KV caches) belongs to the scheduler, which
/// runs up to `info.parallel` generations at once, batched.
pub struct Engine {
    pub tokenizer: Arc<Tokenizer>,
    pub template: Option<ChatTemplate>,
    pub info: ModelInfo,
    pub device: Device,
    scheduler: Scheduler,
}

/// A Candle error's message without the backtrace Candle appends to driver errors: a user
/// needs "invalid device ordinal", not the frames that led there.
fn first_line(error: &candle_core::Error) -> String {
    error.to_string().lines().next().unwrap_or_default().trim_end().to_string()
}

/// "cpu", "cuda:N" or "metal" to a Candle device: a malformed string is `device_unknown`, a
/// device this build or machine does not have is `device_unavailable`.
pub fn parse_device(device: &str) -> EngineResult<Device> {
    if device == "cpu" {
        return Ok(Device::Cpu);
    }
    if let Some(index) = device.strip_prefix("cuda:") {
        let index: usize =
            index.parse().map_err(|_| EngineError::new(ErrorCode::DeviceUnknown, format!("unknown device \"{device}\": expected cpu, cuda:N or metal")))?;
        if !cfg!(feature = "cuda") {
            return Err(EngineError::new(
                ErrorCode::DeviceUnavailable,
                format!(
                    "device {device} is not available: this build of the candle engine has no CUDA support (build one with `scripts/build-native-cuda.sh`)"
                ),
            ));
        }
        return Device::new_cuda(index)
            .map_err(|e| EngineError::new(ErrorCode::DeviceUnavailable, format!("device {device} is not available: {}", first_line(&e))));
    }
    if device == "metal" {
        if !cfg!(feature = "metal") {
            return Err(EngineError::new(ErrorCode::DeviceUnavailable, "device metal is not available: this build of the candle engine has no Metal support"));
        }
        return Device::new_metal(0).map_err(|e| EngineError::new(ErrorCode::DeviceUnavailable, format!("device metal is not available: {}", first_line(&e))));
    }
    Err(EngineError::new(ErrorCode::DeviceUnknown, format!("unknown device \"{device}\": expected cpu, cuda:N or metal")))
}

static THREADS: std::sync::OnceLock<usize> = std::sync::OnceLock::new();

/// The CPU threads this process computes with (set by the first model load).
pub fn threads() -> usize {
    *THREADS.get_or_init(|| std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1))
}

pub(crate) fn configure_threads(threads: Option<usize>) {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let threads = threads.filter(|t| *t > 0).unwrap_or_else(|| std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1));
        let _ = THREADS.set(threads);
        // Candle's matmul pool reads this once, at its first use.
        if std::env::var_os("CANDLE_NUM_THREADS").is_none() {
            std::env::set_var("CANDLE_NUM_THREADS", threads.to_string());
        }
    });
}

impl Engine {
    pub fn load(options: &LoadOptions, progress: &mut dyn FnMut(f64)) -> EngineResult<Self> {
        let device = parse_device(&options.device)?;
        let (forward, asked) = ForwardPath::resolve(&device, options.forward)?;
        configure_threads(options.threads);
        let mut file = gguf::open(Path::new(&options.path))?;
        let config = Config::from_gguf(&file.content.metadata, &file.content.tensor_infos)?;
        let md = Metadata(&file.content.metadata);
        let tokenizer = Tokenizer::from_metadata(&md)?;
        // The GGUF's own template; without one, the format its special tokens say it was trained on.
        let template = match md.string("tokenizer.chat_template") {
            Some(source) => Some(ChatTemplate::new(source)?),
            None if tokenizer.token_id("<start_of_turn>").is_some() => Some(ChatTemplate::new(crate::chat_template::GEMMA_TEMPLATE)?),
            None if tokenizer.token_id("<|start_header_id|>").is_some() => Some(ChatTemplate::new(crate::chat_template::LLAMA3_TEMPLATE)?),
            None if tokenizer.token_id("<|im_start|>").is_some() => Some(ChatTemplate::new(crate::chat_template::CHATML_TEMPLATE)?),
            None => None,
        };
        let name = md.string("general.name").map(str::to_string);
        let context_size = options.context_size.filter(|c| *c > 0).unwrap_or(config.train_context.min(4096));
        if context_size > config.train_context.max(1) * 4 {
            return Err(EngineError::invalid_request(format!(
                "context size {context_size} is more than 4 times what the model was trained for ({})",
                config.train_context
            )));
        }
        let parallel = options.parallel.filter(|p| *p > 0).unwrap_or(1);
        if parallel > MAX_PARALLEL {
            return Err(EngineError::invalid_request(format!("parallel {parallel} is more than {MAX_PARALLEL} streams")));
        }
        let model = match &options.tensor_parallel {
            None => match Decoder::load(forward, config.clone(), &file.content, &mut file.reader, &device, context_size, parallel, progress) {
                Err(error) if forward.falls_back(asked, &error) => {
                    // The documented fallback: the graph path is the CUDA default only where it has kernels.
                    eprintln!("rbee-native: {}; loading with the tensor forward path instead", error.message);
                    Decoder::load(ForwardPath::Tensor, config.clone(), &file.content, &mut file.reader, &device, context_size, parallel, progress)?
                }
                other => other?,
            },
            Some(tp) if device.is_cpu() && forward == ForwardPath::Ggml => {
                Decoder::Sharded(Box::new(crate::model::shard::launch::load_coordinator(tp, Path::new(&options.path), config.clone(), context_size, progress)?))
            }
            #[cfg(feature = "cuda")]
            Some(tp) if device.is_cuda() && forward == ForwardPath::Graph => Decoder::Graph(Box::new(crate::model::shard::launch::load_graph_coordinator(
                tp,
                Path::new(&options.path),
                config.clone(),
                &device,
                context_size,
                parallel,
                progress,
            )?)),
            Some(_) => {
                return Err(EngineError::new(
                    ErrorCode::DeviceUnavailable,
                    "tensor-parallel groups run the ggml path on the CPU or the graph path on CUDA GPUs (cuda:N)",
                ));
            }
        };
        let info = ModelInfo {
            architecture: config.arch.name().to_string(),
            name,
            device: options.device.clone(),
            forward: model.path(),
            context_size,
            train_context_size: config.train_context,
            vocab_size: tokenizer.vocab_size(),
            layers: config.n_layer,
            embedding_size: config.n_embd,
            bos_token: tokenizer.bos,
            eos_token: tokenizer.eos,
            eog_tokens: tokenizer.eog_ids(),
            tokenizer: tokenizer.model_name.clone(),
            has_chat_template: template.is_some(),
            weight_bytes: model.weight_bytes() as u64,
            kv_cache_bytes: model.cache_bytes() as u64,
            file_bytes: file.file_size,
            parallel: model.slots(),
        };
        let tokenizer = Arc::new(tokenizer);
        let scheduler = Scheduler::start(model, tokenizer.clone(), PREFILL_BATCH)?;
        Ok(Self { tokenizer, template, info, device, scheduler })
    }

    /// Slots, those in use and requests waiting for one, now.
    pub fn batch(&self) -> BatchStats {
        self.scheduler.stats()
    }

    fn special_text(&self, id: Option<u32>) -> String {
        id.and_then(|id| self.tokenizer.token_text(id)).unwrap_or("").to_string()
    }

    pub fn apply_chat_template(&self, messages: &[ChatMessage]) -> EngineResult<String> {
        let template = self
            .template
            .as_ref()
            .ok_or_else(|| EngineError::new(ErrorCode::TemplateError, "the model has no chat template (tokenizer.chat_template): use a completion prompt"))?;
        template.render(messages, &self.special_text(self.tokenizer.bos), &self.special_text(self.tokenizer.eos), true)
    }

    pub fn prompt_tokens(&self, prompt: &Prompt) -> EngineResult<Vec<u32>> {
        let tokens = match prompt {
            Prompt::Text(text) => self.tokenizer.encode(text, true, false),
            Prompt::Tokens(tokens) => {
                if let Some(bad) = tokens.iter().find(|t| **t as usize >= self.tokenizer.vocab_size()) {
                    return Err(EngineError::invalid_request(format!("token {bad} is outside the vocabulary of {}", self.tokenizer.vocab_size())));
                }
                tokens.clone()
            }
            Prompt::Chat(messages) => {
                let text = self.apply_chat_template(messages)?;
                // The template writes the BOS itself when the model wants one.
                let bos_text = self.special_text(self.tokenizer.bos);
                let add_bos = !(bos_text.is_empty() || text.starts_with(&bos_text));
                self.tokenizer.encode(&text, add_bos, true)
            }
        };
        if tokens.is_empty() {
            return Err(EngineError::invalid_request("the prompt is empty"));
        }
        Ok(tokens)
    }

    /// The logits after evaluating `tokens` from position 0 (in prefill batches, as `generate`).
    pub fn logits(&self, tokens: &[u32]) -> EngineResult<Vec<f32>> {
        if tokens.is_empty() || tokens.len() > self.scheduler.context_size() {
            return Err(EngineError::invalid_request(format!("{} tokens do not fit the context", tokens.len())));
        }
        self.scheduler.with_slot(|forward| {
            let mut logits = Vec::new();
            let mut position = 0;
            for chunk in tokens.chunks(PREFILL_BATCH) {
                logits = forward(chunk, position)?;
                position += chunk.len();
            }
            Ok(logits)
        })
    }

    /// Teacher forcing: evaluates `prompt` as `generate` does (prefill batches), then feeds
    /// `forced` one token at a time (the decode path), and returns, before each forced token, the
    /// `top` most probable next tokens with their softmax probabilities (computed in f64). What a
    /// comparison with another engine needs that greedy tokens alone cannot give: after the first
    /// near-tie that rounds the other way, greedy continuations no longer say anything.
    pub fn next_token_probabilities(&self, prompt: &[u32], forced: &[u32], top: usize) -> EngineResult<Vec<Vec<(u32, f64)>>> {
        let context = self.scheduler.context_size();
        if prompt.is_empty() || prompt.len() + forced.len() > context {
            return Err(EngineError::invalid_request(format!(
                "{} prompt and {} forced tokens do not fit the context of {context}",
                prompt.len(),
                forced.len()
            )));
        }
        if let Some(&bad) = prompt.iter().chain(forced).find(|&&token| token as usize >= self.info.vocab_size) {
            return Err(EngineError::invalid_request(format!("token {bad} is outside the vocabulary of {}", self.info.vocab_size)));
        }
        self.scheduler.with_slot(|forward| {
            let mut logits = Vec::new();
            let mut position = 0;
            for chunk in prompt.chunks(PREFILL_BATCH) {
                logits = forward(chunk, position)?;
                position += chunk.len();
            }
            let mut distributions = Vec::with_capacity(forced.len());
            for (index, &token) in forced.iter().enumerate() {
                distributions.push(top_probabilities(&logits, top));
                if index + 1 < forced.len() {
                    logits = forward(&[token], position)?;
                    position += 1;
                }
            }
            Ok(distributions)
        })
    }

    /// Generates one answer, batched with whatever else runs on the model. `on_text` gets each
    /// piece of text as soon as it is safe to show; `cancel` is checked before every forward
    /// pass, so a cancel lands within one step (and frees the slot then).
    pub fn generate(
        &self,
        request: &GenerateRequest,
        cancel: &AtomicBool,
        on_text: &mut dyn FnMut(&str),
        on_token: &mut dyn FnMut(u32),
    ) -> EngineResult<GenerateOutcome> {
        request.sampling.validate()?;
        let prompt = self.prompt_tokens(&request.prompt)?;
        let context = self.scheduler.context_size();
        if prompt.len() >= context {
            return Err(EngineError::new(
                ErrorCode::PromptTooLong,
                format!("the prompt is {} tokens; the context holds {context} (and needs room for at least one more)", prompt.len()),
            ));
        }
        if request.max_tokens == 0 {
            return Ok(GenerateOutcome { text: String::new(), tokens: Vec::new(), prompt_tokens: prompt.len(), finish_reason: FinishReason::Length });
        }
        let (events, received) = mpsc::channel();
        // The scheduler watches its own flag; the caller's is copied into it as events come.
        let flag = Arc::new(AtomicBool::new(cancel.load(Ordering::Relaxed)));
        self.scheduler.submit(Job {
            prompt,
            max_tokens: request.max_tokens,
            sampling: request.sampling,
            stop: request.stop.clone(),
            cancel: flag.clone(),
            events,
        });
        loop {
            if cancel.load(Ordering::Relaxed) {
                flag.store(true, Ordering::Relaxed);
            }
            match received.recv_timeout(Duration::from_millis(10)) {
                Ok(Event::Token(token)) => on_token(token),
                Ok(Event::Text(text)) => on_text(&text),
                Ok(Event::Done(outcome)) => return outcome,
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => return Err(EngineError::internal("the batch scheduler stopped before the generation ended")),
            }
        }
    }
}

/// The `top` most probable tokens of a softmax over `logits` (f64 sums), most probable first.
fn top_probabilities(logits: &[f32], top: usize) -> Vec<(u32, f64)> {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
    let sum: f64 = logits.iter().map(|&logit| (logit as f64 - max).exp()).sum();
    let mut order: Vec<u32> = (0..logits.len() as u32).collect();
    let top = top.min(order.len());
    if top == 0 {
        return Vec::new();
    }
    order.select_nth_unstable_by(top - 1, |&a, &b| logits[b as usize].total_cmp(&logits[a as usize]));
    order.truncate(top);
    order.sort_by(|&a, &b| logits[b as usize].total_cmp(&logits[a as usize]).then(a.cmp(&b)));
    order.into_iter().map(|token| (token, (logits[token as usize] as f64 - max).exp() / sum)).collect()
}
