//! Continuous batching: one thread per model steps every stream that holds a slot (a KV cache)
//! through the decoder together. A new request takes a free slot and joins at the next step; a
//! finished or cancelled one leaves after the step that ends it and frees its slot at once.
//! A prompt is evaluated in the same slices as a stream served alone (`prefill_chunk` tokens,
//! llama.cpp's batch), one slice per step joined to the decoding streams' tokens, so a new prompt
//! holds the others back by at most one slice, and every stream sees the arithmetic it would see
//! alone (see `Transformer::step`).
//!
//! Sampling, stop strings and text streaming run here too; the caller gets events over a
//! channel, so a slow consumer never holds up the batch.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::Sender;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Duration;

use crate::engine::{FinishReason, GenerateOutcome};
use crate::error::{EngineError, EngineResult};
use crate::model::decoder::{Decoder, Segment, StepOutput as Output};
use crate::sampling::{Sampler, SamplingParams};
use crate::stop::{Pushed, TextStream};
use crate::tokenizer::Tokenizer;

/// What a stream reports, in order: tokens and text as they come, then one `Done`.
#[derive(Debug)]
pub enum Event {
    Token(u32),
    Text(String),
    Done(EngineResult<GenerateOutcome>),
}

/// One request for the scheduler. `prompt` is already tokenized and fits the context.
pub struct Job {
    pub prompt: Vec<u32>,
    pub max_tokens: usize,
    pub sampling: SamplingParams,
    pub stop: Vec<String>,
    pub cancel: Arc<AtomicBool>,
    pub events: Sender<Event>,
}

/// The scheduler's figures now: what a heartbeat reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchStats {
    /// Streams the model can hold at once.
    pub slots: usize,
    /// Slots in use (generating, or lent to a teacher-forcing evaluation).
    pub active: usize,
    /// Requests waiting for a slot.
    pub waiting: usize,
}

struct State {
    waiting: VecDeque<Job>,
    /// Free slot ids; the lowest is taken first.
    free: Vec<usize>,
    generating: usize,
    lent: usize,
    shutdown: bool,
    /// Set if the stepping thread died (a panic outside a step): every request then fails at
    /// once instead of waiting for a thread that is gone.
    failed: Option<String>,
}

struct Shared {
    decoder: Mutex<Decoder>,
    state: Mutex<State>,
    /// Signalled when a job arrives, a slot frees up, or the scheduler shuts down.
    changed: Condvar,
    tokenizer: Arc<Tokenizer>,
    slots: usize,
    context: usize,
    prefill_chunk: usize,
    device_greedy: bool,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Shared {
    fn release(&self, slot: usize, lent: bool) {
        let mut state = lock(&self.state);
        if lent {
            state.lent -= 1;
        } else {
            state.generating -= 1;
        }
        state.free.push(slot);
        state.free.sort_unstable_by_key(|&slot| std::cmp::Reverse(slot));
        drop(state);
        self.changed.notify_all();
    }
}

/// A stream holding a slot.
struct Stream {
    slot: usize,
    job: Job,
    sampler: Sampler,
    text: TextStream,
    generated: Vec<u32>,
    /// Prompt tokens in the slot's cache; then positions in it.
    position: usize,
    /// The sampled token to feed next (decoding), None while the prompt is still going in.
    pending: Option<u32>,
}

impl Stream {
    fn new(slot: usize, job: Job) -> Self {
        let sampler = Sampler::new(job.sampling);
        let text = TextStream::new(&job.stop);
        Self { slot, job, sampler, text, generated: Vec::new(), position: 0, pending: None }
    }

    fn finish(mut self, reason: FinishReason, shared: &Shared) {
        let rest = self.text.finish();
        if !rest.is_empty() {
            let _ = self.job.events.send(Event::Text(rest));
        }
        let outcome =
            GenerateOutcome { text: self.text.text().to_string(), tokens: self.generated, prompt_tokens: self.job.prompt.len(), finish_reason: reason };
        shared.release(self.slot, false);
        let _ = self.job.events.send(Event::Done(Ok(outcome)));
    }

    fn fail(self, error: EngineError, shared: &Shared) {
        shared.release(self.slot, false);
        let _ = self.job.events.send(Event::Done(Err(error)));
    }

    /// Takes the step's output for this stream: the next token, then whether it ends the stream.
    fn advance(&mut self, token: u32, tokenizer: &Tokenizer, context: usize) -> Option<FinishReason> {
        if tokenizer.is_eog(token) {
            return Some(FinishReason::Stop);
        }
        self.generated.push(token);
        let _ = self.job.events.send(Event::Token(token));
        match self.text.push(&tokenizer.token_bytes(token, false)) {
            Pushed::Text(text) => {
                if !text.is_empty() {
                    let _ = self.job.events.send(Event::Text(text));
                }
            }
            Pushed::Stopped(text) => {
                if !text.is_empty() {
                    let _ = self.job.events.send(Event::Text(text));
                }
                return Some(FinishReason::Stop);
            }
        }
        if self.generated.len() >= self.job.max_tokens || self.position >= context {
            return Some(FinishReason::Length);
        }
        self.pending = Some(token);
        None
    }
}

/// A cancelled request that never got a slot.
fn cancelled_before_start(job: Job) {
    let outcome = GenerateOutcome { text: String::new(), tokens: Vec::new(), prompt_tokens: job.prompt.len(), finish_reason: FinishReason::Cancelled };
    let _ = job.events.send(Event::Done(Ok(outcome)));
}

pub struct Scheduler {
    shared: Arc<Shared>,
}

impl Scheduler {
    /// Takes the loaded decoder and starts the model's stepping thread.
    pub fn start(decoder: Decoder, tokenizer: Arc<Tokenizer>, prefill_chunk: usize) -> EngineResult<Self> {
        let slots = decoder.slots().max(1);
        let context = decoder.context_size();
        let device_greedy = decoder.has_device_greedy();
        let state = State { waiting: VecDeque::new(), free: (0..slots).rev().collect(), generating: 0, lent: 0, shutdown: false, failed: None };
        let shared = Arc::new(Shared {
            decoder: Mutex::new(decoder),
            state: Mutex::new(state),
            changed: Condvar::new(),
            tokenizer,
            slots,
            context,
            prefill_chunk: prefill_chunk.max(1),
            device_greedy,
        });
        let worker = shared.clone();
        std::thread::Builder::new()
            .name("rbee-candle-batch".into())
            .spawn(move || {
                let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| run(&worker)));
                if let Err(panic) = outcome {
                    let message = format!("the batch scheduler stopped: {}", crate::binding_native_error::panic_message(panic));
                    let mut state = lock(&worker.state);
                    for job in state.waiting.drain(..) {
                        let _ = job.events.send(Event::Done(Err(EngineError::internal(message.clone()))));
                    }
                    state.failed = Some(message);
                    drop(state);
                    worker.changed.notify_all();
                }
            })
            .map_err(|e| EngineError::internal(format!("cannot start the batch thread: {e}")))?;
        Ok(Self { shared })
    }

    pub fn slots(&self) -> usize {
        self.shared.slots
    }

    pub fn context_size(&self) -> usize {
        self.shared.context
    }

    /// Queues a request; it starts at the next step that finds a free slot.
    pub fn submit(&self, job: Job) {
        let mut state = lock(&self.shared.state);
        if let Some(message) = &state.failed {
            let _ = job.events.send(Event::Done(Err(EngineError::internal(message.clone()))));
            return;
        }
        state.waiting.push_back(job);
        drop(state);
        self.shared.changed.notify_all();
    }

    pub fn stats(&self) -> BatchStats {
        let state = lock(&self.shared.state);
        BatchStats { slots: self.shared.slots, active: state.generating + state.lent, waiting: state.waiting.len() }
    }

    /// Runs `work` with a slot of its own (waiting for one to free up), outside the batch: each
    /// call of its forward function evaluates tokens at a position of that slot, between the
    /// batch's steps. For teacher forcing and logits, which need every position's logits.
    pub fn with_slot<T>(&self, work: impl FnOnce(&mut dyn FnMut(&[u32], usize) -> EngineResult<Vec<f32>>) -> EngineResult<T>) -> EngineResult<T> {
        let shared = &self.shared;
        let slot = {
            let mut state = lock(&shared.state);
            loop {
                if let Some(message) = &state.failed {
                    return Err(EngineError::internal(message.clone()));
                }
                if let Some(slot) = state.free.pop() {
                    state.lent += 1;
                    break slot;
                }
                state = shared.changed.wait(state).unwrap_or_else(|poisoned| poisoned.into_inner());
            }
        };
        struct Lent<'a>(&'a Shared, usize);
        impl Drop for Lent<'_> {
            fn drop(&mut self) {
                self.0.release(self.1, true);
            }
        }
        let _lent = Lent(shared, slot);
        let mut forward = |tokens: &[u32], start: usize| {
            let mut decoder = lock(&shared.decoder);
            let mut logits = decoder.step(&[Segment { slot, tokens, start }])?;
            Ok(logits.pop().unwrap_or_default())
        };
        work(&mut forward)
    }
}

impl Drop for Scheduler {
    fn drop(&mut self) {
        lock(&self.shared.state).shutdown = true;
        self.shared.changed.notify_all();
    }
}

/// The segments of the next step: every decoding stream's pending token, and prompt slices
/// (whole ones, as a stream alone would evaluate them) up to one slice's worth of tokens, the
/// first prompt in line always getting its next slice.
fn plan(streams: &[Stream], chunk: usize) -> Vec<(usize, std::ops::Range<usize>)> {
    let mut planned = Vec::with_capacity(streams.len());
    let mut budget = chunk;
    let mut any_prompt = false;
    for (index, stream) in streams.iter().enumerate() {
        if stream.pending.is_some() {
            planned.push((index, 0..1));
            continue;
        }
        let end = (stream.position + chunk).min(stream.job.prompt.len());
        let n = end - stream.position;
        if !any_prompt || n <= budget {
            planned.push((index, stream.position..end));
            budget = budget.saturating_sub(n);
            any_prompt = true;
        }
    }
    planned
}

fn run(shared: &Shared) {
    let mut streams: Vec<Stream> = Vec::new();
    loop {
        {
            let mut state = lock(&shared.state);
            loop {
                let (cancelled, waiting): (VecDeque<Job>, VecDeque<Job>) = state.waiting.drain(..).partition(|job| job.cancel.load(Ordering::Relaxed));
                state.waiting = waiting;
                cancelled.into_iter().for_each(cancelled_before_start);
                while !state.waiting.is_empty() {
                    let Some(slot) = state.free.pop() else { break };
                    let job = state.waiting.pop_front().expect("a waiting job");
                    state.generating += 1;
                    streams.push(Stream::new(slot, job));
                }
                if !streams.is_empty() {
                    break;
                }
                if state.shutdown {
                    return;
                }
                // A timeout as well as the signal: a waiting job's cancel flag is not signalled.
                state = shared.changed.wait_timeout(state, Duration::from_millis(50)).map(|(s, _)| s).unwrap_or_else(|poisoned| poisoned.into_inner().0);
            }
        }
        // A cancel lands before the next forward pass, as it does for a stream alone.
        let (cancelled, live): (Vec<Stream>, Vec<Stream>) = streams.drain(..).partition(|s| s.job.cancel.load(Ordering::Relaxed));
        streams = live;
        cancelled.into_iter().for_each(|s| s.finish(FinishReason::Cancelled, shared));
        if streams.is_empty() {
            continue;
        }
        step(shared, &mut streams);
    }
}

/// One forward step for the planned streams, then each one's token, text and ending.
fn step(shared: &Shared, streams: &mut Vec<Stream>) {
    let planned = plan(streams, shared.prefill_chunk);
    let inputs: Vec<Vec<u32>> = planned
        .iter()
        .map(|(index, range)| {
            let stream = &streams[*index];
            match stream.pending {
                Some(token) => vec![token],
                None => stream.job.prompt[range.clone()].to_vec(),
            }
        })
        .collect();
    let segments: Vec<Segment> =
        planned.iter().zip(&inputs).map(|((index, _), tokens)| Segment { slot: streams[*index].slot, tokens, start: streams[*index].position }).collect();
    // A greedy stream on a path that picks the token on the device gets one id back instead of
    // the vocabulary's logits; the others in the same step still get their logits.
    let greedy: Vec<bool> = planned.iter().map(|(index, _)| shared.device_greedy && streams[*index].sampler.is_greedy()).collect();
    let outputs = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let mut decoder = lock(&shared.decoder);
        if greedy.iter().any(|&g| g) {
            decoder.step_outputs(&segments, &greedy)
        } else {
            decoder.step(&segments).map(|all| all.into_iter().map(Output::Logits).collect())
        }
    }))
    .unwrap_or_else(|panic| Err(EngineError::internal(format!("the batch step panicked: {}", crate::binding_native_error::panic_message(panic)))));
    let outputs = match outputs {
        Ok(outputs) => outputs,
        Err(error) => {
            // The failed step's streams end with the error; the others never ran in it.
            let mut failed: Vec<usize> = planned.iter().map(|(index, _)| *index).collect();
            failed.sort_unstable_by_key(|&index| std::cmp::Reverse(index));
            for index in failed {
                streams.remove(index).fail(error.clone(), shared);
            }
            return;
        }
    };
    let mut ended = Vec::new();
    for ((index, range), output) in planned.iter().zip(outputs) {
        let stream = &mut streams[*index];
        stream.position += range.len();
        if stream.pending.is_none() && stream.position < stream.job.prompt.len() {
            continue;
        }
        let token = match output {
            Output::Token(token) => token,
            Output::Logits(logits) => stream.sampler.sample(&logits),
        };
        if let Some(reason) = stream.advance(token, &shared.tokenizer, shared.context) {
            ended.push((*index, reason));
        }
    }
    ended.sort_unstable_by_key(|&(index, _)| std::cmp::Reverse(index));
    for (index, reason) in ended {
        streams.remove(index).finish(reason, shared);
    }
}

#[cfg(test)]
mod tests;
