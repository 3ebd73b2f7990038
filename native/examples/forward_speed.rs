//! Prefill and decode speed of one forward path:
//! `cargo run --release --example forward_speed -- model.gguf [cpu|cuda:0|metal] [ggml|tensor] [threads] [tokens]`.
//! Greedy, from a fixed prompt; the decode rate is measured between the first and the last token.
use std::sync::atomic::AtomicBool;
use std::time::Instant;

use rbee_native::engine::{Engine, GenerateRequest, LoadOptions, Prompt};
use rbee_native::model::decoder::ForwardPath;
use rbee_native::sampling::SamplingParams;

fn main() {
    let mut args = std::env::args().skip(1);
    let path = args.next().expect("a GGUF path");
    let device = args.next().unwrap_or_else(|| "cpu".into());
    let forward = args.next().map(|p| ForwardPath::parse(&p).expect("ggml or tensor"));
    let threads = args.next().map(|t| t.parse().expect("a thread count"));
    let max_tokens: usize = args.next().map(|n| n.parse().expect("a token count")).unwrap_or(64);

    let started = Instant::now();
    let options = LoadOptions { path, device, context_size: Some(2048), threads, forward, tensor_parallel: None, parallel: None };
    let engine = Engine::load(&options, &mut |_| {}).expect("load");
    let load = started.elapsed();

    let prompt = "Write a short story about a lighthouse keeper who finds a message in a bottle. ".repeat(4);
    let request = GenerateRequest { prompt: Prompt::Text(prompt), max_tokens, sampling: SamplingParams::greedy(), stop: vec![] };
    let prompt_tokens = engine.prompt_tokens(&request.prompt).expect("tokens").len();
    let started = Instant::now();
    let mut token_times = Vec::new();
    let outcome = engine.generate(&request, &AtomicBool::new(false), &mut |_| {}, &mut |_| token_times.push(started.elapsed())).expect("generate");
    let first = token_times.first().copied().unwrap_or_default();
    let last = token_times.last().copied().unwrap_or_default();
    let decoded = token_times.len().saturating_sub(1);
    println!(
        "{}",
        serde_json::json!({
            "forward": engine.info.forward.as_str(),
            "device": engine.info.device,
            "load_s": load.as_secs_f64(),
            "prompt_tokens": prompt_tokens,
            "prefill_tok_s": prompt_tokens as f64 / first.as_secs_f64(),
            "decode_tokens": decoded,
            "decode_tok_s": decoded as f64 / (last - first).as_secs_f64(),
            "kv_cache_bytes": engine.info.kv_cache_bytes,
            "tokens": outcome.tokens,
        })
    );
}
