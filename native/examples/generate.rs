//! Greedy generation from the command line: `cargo run --release --example generate -- model.gguf "prompt" [n]`.
use std::sync::atomic::AtomicBool;
use std::time::Instant;

use rbee_native::engine::{Engine, GenerateRequest, LoadOptions, Prompt};
use rbee_native::sampling::SamplingParams;

fn main() {
    let mut args = std::env::args().skip(1);
    let path = args.next().expect("a GGUF path");
    let prompt = args.next().unwrap_or_else(|| "The capital of France is".into());
    let n: usize = args.next().map(|s| s.parse().unwrap()).unwrap_or(32);
    let started = Instant::now();
    let engine = Engine::load(
        &LoadOptions { path, device: "cpu".into(), context_size: Some(2048), threads: None, forward: None, tensor_parallel: None, parallel: None },
        &mut |_| {},
    )
    .expect("load");
    eprintln!("loaded in {:?}", started.elapsed());
    let request = GenerateRequest { prompt: Prompt::Text(prompt.clone()), max_tokens: n, sampling: SamplingParams::greedy(), stop: vec![] };
    let prompt_tokens = engine.prompt_tokens(&request.prompt).unwrap();
    eprintln!("prompt tokens {:?}", prompt_tokens);
    let started = Instant::now();
    let outcome = engine.generate(&request, &AtomicBool::new(false), &mut |t| eprint!("{t}"), &mut |_| {}).expect("generate");
    let elapsed = started.elapsed();
    eprintln!();
    println!("{}", serde_json::json!({"tokens": outcome.tokens, "text": outcome.text, "finish": outcome.finish_reason.as_str()}));
    eprintln!("{} tokens in {:?} ({:.1} tok/s)", outcome.tokens.len(), elapsed, outcome.tokens.len() as f64 / elapsed.as_secs_f64());
}
