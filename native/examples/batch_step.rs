//! Time of one batched decode step at 1, 2, 4 and 8 streams, on the ggml path:
//! `cargo run --release --example batch_step -- model.gguf [threads] [steps]`.
//! Each stream first takes a short prompt in its own slot; then every step decodes one token for
//! every stream. Prints the median step time and the aggregate tokens/s per stream count.
use std::time::Instant;

use rbee_native::gguf;
use rbee_native::model::config::Config;
use rbee_native::model::decoder::{Decoder, ForwardPath, Segment};

fn main() {
    let mut args = std::env::args().skip(1);
    let path = args.next().expect("a GGUF path");
    let threads: usize = args.next().map(|t| t.parse().expect("a thread count")).unwrap_or(2);
    let steps: usize = args.next().map(|n| n.parse().expect("a step count")).unwrap_or(24);
    std::env::set_var("CANDLE_NUM_THREADS", threads.to_string());
    let mut file = gguf::open(std::path::Path::new(&path)).expect("open");
    let config = Config::from_gguf(&file.content.metadata, &file.content.tensor_infos).expect("config");
    let mut decoder = Decoder::load(ForwardPath::Ggml, config, &file.content, &mut file.reader, &candle_core::Device::Cpu, 512, 8, &mut |_| {}).expect("load");
    for streams in [1usize, 2, 4, 8] {
        let prompts: Vec<Vec<u32>> = (0..streams).map(|s| vec![2, 100 + s as u32, 200, 300, 400]).collect();
        let segments: Vec<Segment> = prompts.iter().enumerate().map(|(slot, tokens)| Segment { slot, tokens, start: 0 }).collect();
        decoder.step(&segments).expect("prefill");
        let mut times = Vec::new();
        for step in 0..steps {
            let inputs: Vec<[u32; 1]> = (0..streams).map(|s| [(1000 + step * 7 + s) as u32]).collect();
            let segments: Vec<Segment> = inputs.iter().enumerate().map(|(slot, tokens)| Segment { slot, tokens, start: 5 + step }).collect();
            let began = Instant::now();
            decoder.step(&segments).expect("step");
            times.push(began.elapsed().as_secs_f64() * 1000.0);
        }
        times.sort_by(f64::total_cmp);
        let median = times[times.len() / 2];
        println!("{{\"streams\": {streams}, \"step_ms\": {median:.2}, \"aggregate_tok_s\": {:.1}}}", streams as f64 * 1000.0 / median);
    }
}
