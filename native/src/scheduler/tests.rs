//! The scheduler and the batched step on tiny synthetic models (random weights, the quantized
//! types of a real file): every stream in a batch gets, to the bit, what it gets alone.

use std::collections::HashMap;
use std::io::Cursor;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver};
use std::sync::Arc;
use std::time::Duration;

use candle_core::quantized::gguf_file::{Content, Value};
use candle_core::Device;

use super::{plan, Event, Job, Scheduler, Stream};
use crate::engine::{FinishReason, GenerateOutcome};
use crate::gguf::Metadata;
use crate::model::config::{Arch, Config};
use crate::model::decoder::{Decoder, ForwardPath, Segment, StepOutput};
use crate::model::tensor::tiny_gguf::{tiny_gguf, Matrices, TINY};
use crate::sampling::SamplingParams;
use crate::tokenizer::Tokenizer;

const CONTEXT: usize = 64;

fn load(arch: Arch, matrices: Matrices, path: ForwardPath, slots: usize) -> Decoder {
    let mut reader = Cursor::new(tiny_gguf(arch, TINY, matrices, 11));
    let content = Content::read(&mut reader).unwrap();
    let config = Config::from_gguf(&content.metadata, &content.tensor_infos).unwrap();
    Decoder::load(path, config, &content, &mut reader, &Device::Cpu, CONTEXT, slots, &mut |_| {}).unwrap()
}

/// A byte-level vocabulary as large as the tiny models' (320): the 256 bytes, filler tokens, and
/// an end-of-text token last, so random weights end some streams early, as real ones do.
fn tokenizer() -> Arc<Tokenizer> {
    let mut tokens: Vec<String> = (0..=255u8).map(|b| crate::tokenizer::bpe::byte_level_byte(b).to_string()).collect();
    while tokens.len() < TINY.n_vocab - 1 {
        tokens.push(format!("w{}", tokens.len()));
    }
    tokens.push("<|endoftext|>".into());
    let mut md = HashMap::new();
    md.insert("tokenizer.ggml.model".into(), Value::String("gpt2".into()));
    md.insert("tokenizer.ggml.pre".into(), Value::String("qwen2".into()));
    md.insert("tokenizer.ggml.tokens".into(), Value::Array(tokens.iter().cloned().map(Value::String).collect()));
    md.insert("tokenizer.ggml.merges".into(), Value::Array(Vec::new()));
    let mut types = vec![Value::I32(1); tokens.len()];
    *types.last_mut().unwrap() = Value::I32(3);
    md.insert("tokenizer.ggml.token_type".into(), Value::Array(types));
    md.insert("tokenizer.ggml.eos_token_id".into(), Value::U32(tokens.len() as u32 - 1));
    md.insert("tokenizer.ggml.add_bos_token".into(), Value::Bool(false));
    Arc::new(Tokenizer::from_metadata(&Metadata(&md)).unwrap())
}

fn prompt(seed: u32, len: usize) -> Vec<u32> {
    (0..len as u32).map(|i| (seed * 37 + i * 11 + 5) % (TINY.n_vocab as u32 - 1)).collect()
}

fn job(prompt: Vec<u32>, max_tokens: usize) -> (Job, Receiver<Event>, Arc<AtomicBool>) {
    let (events, received) = mpsc::channel();
    let cancel = Arc::new(AtomicBool::new(false));
    let job = Job { prompt, max_tokens, sampling: SamplingParams::greedy(), stop: Vec::new(), cancel: cancel.clone(), events };
    (job, received, cancel)
}

/// The outcome, and the tokens as they were streamed.
fn wait(received: &Receiver<Event>) -> (GenerateOutcome, Vec<u32>) {
    let mut streamed = Vec::new();
    loop {
        match received.recv_timeout(Duration::from_secs(60)).expect("an event within a minute") {
            Event::Token(token) => streamed.push(token),
            Event::Text(_) => {}
            Event::Done(outcome) => return (outcome.unwrap(), streamed),
        }
    }
}

/// Greedy tokens of one stream through slot 0 of a one-slot model, prompt in `chunk` slices.
fn alone(arch: Arch, prompt: &[u32], max_tokens: usize, chunk: usize) -> Vec<u32> {
    let scheduler = Scheduler::start(load(arch, Matrices::Quantized, ForwardPath::Ggml, 1), tokenizer(), chunk).unwrap();
    let (job, received, _) = job(prompt.to_vec(), max_tokens);
    scheduler.submit(job);
    wait(&received).0.tokens
}

/// Logits of every segment of a mixed step (prompt slices and decode tokens at different
/// positions of different slots) equal, bit for bit, those of the same tokens run alone.
#[test]
fn a_step_gives_greedy_segments_a_token_and_the_others_their_logits() {
    let mut decoder = load(Arch::Llama, Matrices::Quantized, ForwardPath::Ggml, 3);
    let prompts = [prompt(5, 4), prompt(6, 2), prompt(7, 6)];
    let segments: Vec<Segment> = prompts.iter().enumerate().map(|(slot, tokens)| Segment { slot, tokens, start: 0 }).collect();
    let outputs = decoder.step_outputs(&segments, &[true, false, true]).unwrap();
    let mut reference = load(Arch::Llama, Matrices::Quantized, ForwardPath::Ggml, 3);
    let logits = reference.step(&segments).unwrap();
    assert_eq!(outputs.len(), 3);
    assert_eq!(outputs[0], StepOutput::Token(crate::sampling::argmax(&logits[0])));
    assert_eq!(outputs[1], StepOutput::Logits(logits[1].clone()));
    assert_eq!(outputs[2], StepOutput::Token(crate::sampling::argmax(&logits[2])));
}

#[test]
fn a_batched_step_gives_each_slot_its_logits_alone() {
    for arch in [Arch::Gemma3, Arch::Llama, Arch::Qwen2, Arch::Qwen3] {
        for matrices in [Matrices::Quantized, Matrices::Gemma270M, Matrices::Float] {
            let mut batched = load(arch, matrices, ForwardPath::Ggml, 4);
            let mut single = load(arch, matrices, ForwardPath::Ggml, 1);
            let prompts = [prompt(1, 9), prompt(2, 3), prompt(3, 14), prompt(4, 1)];
            let mut decoded: [Vec<u32>; 4] = Default::default();
            // Slots 2 and 3 sit out round 0 and start in round 1: streams joining a running batch.
            for round in 0..6 {
                let inputs: Vec<(usize, Vec<u32>, usize)> = (0..4)
                    .filter(|slot| !(round == 0 && *slot >= 2))
                    .map(|slot| match decoded[slot].last() {
                        None => (slot, prompts[slot].clone(), 0),
                        Some(&token) => (slot, vec![token], prompts[slot].len() + decoded[slot].len() - 1),
                    })
                    .collect();
                let segments: Vec<Segment> = inputs.iter().map(|(slot, tokens, start)| Segment { slot: *slot, tokens, start: *start }).collect();
                let got = batched.step(&segments).unwrap();
                for ((slot, _, start), logits) in inputs.iter().zip(&got) {
                    // Slot 0 of the one-slot model replays this stream alone up to this step.
                    let mut expected = single.forward(&prompts[*slot], 0).unwrap();
                    for (i, token) in decoded[*slot].iter().enumerate() {
                        expected = single.forward(&[*token], prompts[*slot].len() + i).unwrap();
                    }
                    let same = expected.len() == logits.len() && expected.iter().zip(logits).all(|(a, b)| a.to_bits() == b.to_bits());
                    assert!(same, "{arch:?} {matrices:?}: slot {slot} at position {start} differs from the stream alone");
                    decoded[*slot].push(crate::sampling::argmax(logits));
                }
            }
        }
    }
}

/// Four streams submitted at once, and a fifth joining mid-way, each produce exactly the tokens
/// they produce alone; prompts longer than a prefill slice go in slice by slice.
#[test]
fn streams_in_a_batch_generate_what_they_generate_alone() {
    let chunk = 4;
    for arch in [Arch::Gemma3, Arch::Llama] {
        let requests = [(prompt(1, 9), 20), (prompt(2, 2), 12), (prompt(3, 13), 25), (prompt(4, 5), 30), (prompt(5, 7), 15)];
        let expected: Vec<Vec<u32>> = requests.iter().map(|(p, max)| alone(arch, p, *max, chunk)).collect();
        assert!(expected.iter().any(|tokens| tokens.len() > 5), "{arch:?}: the streams run long enough to overlap");
        let scheduler = Scheduler::start(load(arch, Matrices::Quantized, ForwardPath::Ggml, 4), tokenizer(), chunk).unwrap();
        assert_eq!(scheduler.slots(), 4);
        let mut receivers = Vec::new();
        for (p, max) in &requests[..4] {
            let (job, received, _) = job(p.clone(), *max);
            scheduler.submit(job);
            receivers.push(received);
        }
        // The fifth waits for a slot: it joins when the first stream to end frees one.
        let (fifth, fifth_received, _) = job(requests[4].0.clone(), requests[4].1);
        scheduler.submit(fifth);
        receivers.push(fifth_received);
        for (i, received) in receivers.iter().enumerate() {
            let (outcome, streamed) = wait(received);
            assert_eq!(outcome.tokens, expected[i], "{arch:?}: stream {i} in the batch");
            assert_eq!(streamed, expected[i], "{arch:?}: stream {i}'s streamed tokens");
            assert_eq!(outcome.prompt_tokens, requests[i].0.len());
        }
        wait_until(|| scheduler.stats().active == 0);
        assert_eq!(scheduler.stats(), super::BatchStats { slots: 4, active: 0, waiting: 0 });
    }
}

/// The tensor path keeps a cache per slot too: interleaved streams stay each other's strangers.
#[test]
fn tensor_path_streams_interleave_without_mixing() {
    let arch = Arch::Qwen3;
    let requests = [(prompt(1, 6), 10), (prompt(2, 3), 14)];
    let single = |p: &[u32], max: usize| {
        let scheduler = Scheduler::start(load(arch, Matrices::Quantized, ForwardPath::Tensor, 1), tokenizer(), 4).unwrap();
        let (job, received, _) = job(p.to_vec(), max);
        scheduler.submit(job);
        wait(&received).0.tokens
    };
    let expected: Vec<Vec<u32>> = requests.iter().map(|(p, max)| single(p, *max)).collect();
    let scheduler = Scheduler::start(load(arch, Matrices::Quantized, ForwardPath::Tensor, 2), tokenizer(), 4).unwrap();
    let receivers: Vec<_> = requests
        .iter()
        .map(|(p, max)| {
            let (job, received, _) = job(p.clone(), *max);
            scheduler.submit(job);
            received
        })
        .collect();
    for (i, received) in receivers.iter().enumerate() {
        assert_eq!(wait(received).0.tokens, expected[i], "tensor path stream {i}");
    }
}

fn wait_until(condition: impl Fn() -> bool) {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while !condition() {
        assert!(std::time::Instant::now() < deadline, "condition not reached in 30 s");
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// A cancelled stream ends as cancelled at the next step and its slot goes to the request
/// waiting for one; a request cancelled while it waits never takes a slot.
#[test]
fn cancelling_frees_the_slot_for_the_next_request() {
    let scheduler = Scheduler::start(load(Arch::Llama, Matrices::Quantized, ForwardPath::Ggml, 1), tokenizer(), 8).unwrap();
    // A stream that would run to the end of the context; cancelled after its first token.
    let (long, long_received, long_cancel) = job(prompt(1, 4), CONTEXT);
    scheduler.submit(long);
    let (waiting, waiting_received, waiting_cancel) = job(prompt(2, 4), 3);
    scheduler.submit(waiting);
    let (next, next_received, _) = job(prompt(3, 4), 3);
    scheduler.submit(next);
    wait_until(|| scheduler.stats() == super::BatchStats { slots: 1, active: 1, waiting: 2 });
    waiting_cancel.store(true, Ordering::Relaxed);
    match long_received.recv_timeout(Duration::from_secs(30)).unwrap() {
        Event::Token(_) => {}
        other => panic!("expected a first token, got {other:?}"),
    }
    long_cancel.store(true, Ordering::Relaxed);
    let (long_outcome, _) = wait(&long_received);
    assert_eq!(long_outcome.finish_reason, FinishReason::Cancelled);
    assert!(long_outcome.tokens.len() < CONTEXT - 4, "cancelled before the context filled");
    let (waiting_outcome, waiting_tokens) = wait(&waiting_received);
    assert_eq!(waiting_outcome.finish_reason, FinishReason::Cancelled);
    assert!(waiting_tokens.is_empty(), "a request cancelled while waiting generates nothing");
    let (next_outcome, _) = wait(&next_received);
    assert_ne!(next_outcome.finish_reason, FinishReason::Cancelled);
    assert_eq!(next_outcome.tokens, alone(Arch::Llama, &prompt(3, 4), 3, 8), "the slot's next stream starts clean");
    wait_until(|| scheduler.stats().active == 0);
}

/// A step takes every decoding stream's token and at most one prefill slice's worth of prompt
/// tokens, in whole slices; the first prompt in line always gets its slice.
#[test]
fn a_step_holds_at_most_one_prefill_slice() {
    let chunk = 8;
    let stream = |slot: usize, prompt_len: usize, position: usize, pending: Option<u32>| {
        let (job, _, _) = job(prompt(slot as u32, prompt_len), 4);
        let mut stream = Stream::new(slot, job);
        stream.position = position;
        stream.pending = pending;
        stream
    };
    let streams = vec![
        stream(0, 5, 9, Some(7)),   // decoding
        stream(1, 20, 8, None),     // second slice of a long prompt: 8 tokens
        stream(2, 3, 0, None),      // a short prompt: over the budget once slot 1 took 8
        stream(3, 30, 17, Some(2)), // decoding
    ];
    let planned = plan(&streams, chunk);
    assert_eq!(planned, vec![(0, 0..1), (1, 8..16), (3, 0..1)]);
    // Alone in line, the short prompt goes in whole, and a second short one joins it.
    let streams = vec![stream(0, 3, 0, None), stream(1, 5, 0, None), stream(2, 4, 0, None)];
    assert_eq!(plan(&streams, chunk), vec![(0, 0..3), (1, 0..5)]);
}

#[test]
fn logits_and_teacher_forcing_borrow_a_slot_between_steps() {
    let scheduler = Scheduler::start(load(Arch::Qwen2, Matrices::Quantized, ForwardPath::Ggml, 2), tokenizer(), 4).unwrap();
    let (job, received, _) = job(prompt(1, 6), 20);
    scheduler.submit(job);
    let lent = scheduler.with_slot(|forward| {
        let first = forward(&prompt(2, 5), 0)?;
        let again = forward(&[3], 5)?;
        Ok((first, again))
    });
    let (first, again) = lent.unwrap();
    let mut alone = load(Arch::Qwen2, Matrices::Quantized, ForwardPath::Ggml, 1);
    assert_eq!(alone.forward(&prompt(2, 5), 0).unwrap(), first);
    assert_eq!(alone.forward(&[3], 5).unwrap(), again);
    wait(&received);
    wait_until(|| scheduler.stats().active == 0);
}
