//! Greedy 32 tokens for each prompt of a JSON file, as JSON: `cargo run --release --example compare -- model.gguf prompts.json`.
use std::sync::atomic::AtomicBool;
use std::time::Instant;

use rbee_native::engine::{Engine, GenerateRequest, LoadOptions, Prompt};
use rbee_native::sampling::SamplingParams;

fn main() {
    let mut args = std::env::args().skip(1);
    let path = args.next().expect("a GGUF path");
    let prompts: Vec<String> = serde_json::from_str(&std::fs::read_to_string(args.next().expect("a prompts file")).unwrap()).unwrap();
    let max_tokens: usize = args.next().map(|v| v.parse().unwrap()).unwrap_or(32);
    let engine = Engine::load(
        &LoadOptions { path, device: "cpu".into(), context_size: Some(2048), threads: Some(2), forward: None, tensor_parallel: None, parallel: None },
        &mut |_| {},
    )
    .expect("load");
    let mut out = Vec::new();
    for prompt in prompts {
        let request = GenerateRequest { prompt: Prompt::Text(prompt.clone()), max_tokens, sampling: SamplingParams::greedy(), stop: vec![] };
        let prompt_tokens = engine.prompt_tokens(&request.prompt).unwrap();
        if std::env::var_os("TOP").is_some() {
            let logits = engine.logits(&prompt_tokens).unwrap();
            let mut idx: Vec<usize> = (0..logits.len()).collect();
            idx.sort_by(|a, b| logits[*b].partial_cmp(&logits[*a]).unwrap());
            eprintln!("{:?}", idx.iter().take(5).map(|i| (*i, logits[*i])).collect::<Vec<_>>());
        }
        let started = Instant::now();
        let outcome = engine.generate(&request, &AtomicBool::new(false), &mut |_| {}, &mut |_| {}).expect("generate");
        out.push(serde_json::json!({"prompt": prompt, "promptTokens": prompt_tokens, "tokens": outcome.tokens, "text": outcome.text, "ms": started.elapsed().as_millis() as u64}));
    }
    println!("{}", serde_json::Value::Array(out));
}
