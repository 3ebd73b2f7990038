//! Top-6 logit gaps after evaluating token sequences (debugging against llama.cpp): `gaps model.gguf seqs.json`.
use rbee_native::engine::{Engine, LoadOptions};

fn main() {
    let mut args = std::env::args().skip(1);
    let path = args.next().unwrap();
    let seqs: Vec<Vec<u32>> = serde_json::from_str(&std::fs::read_to_string(args.next().unwrap()).unwrap()).unwrap();
    let engine = Engine::load(
        &LoadOptions { path, device: "cpu".into(), context_size: Some(2048), threads: Some(2), forward: None, tensor_parallel: None, parallel: None },
        &mut |_| {},
    )
    .unwrap();
    let mut out = Vec::new();
    for seq in seqs {
        let logits = engine.logits(&seq).unwrap();
        let mut idx: Vec<usize> = (0..logits.len()).collect();
        idx.sort_by(|a, b| logits[*b].partial_cmp(&logits[*a]).unwrap());
        out.push(idx.iter().take(6).map(|i| (*i, (logits[*i] - logits[idx[0]]) as f64)).collect::<Vec<_>>());
    }
    println!("{}", serde_json::to_string(&out).unwrap());
}
