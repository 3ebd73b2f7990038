//! Prints a GGUF's metadata (arrays abbreviated) and tensor types: `cargo run --example inspect -- file.gguf`.
use candle_core::quantized::gguf_file::Value;

fn main() {
    let path = std::env::args().nth(1).expect("a GGUF path");
    let file = rbee_native::gguf::open(std::path::Path::new(&path)).expect("open");
    let mut keys: Vec<_> = file.content.metadata.keys().collect();
    keys.sort();
    for key in keys {
        match &file.content.metadata[key] {
            Value::Array(values) => println!("{key} = [{} values] first: {:?}", values.len(), values.iter().take(4).collect::<Vec<_>>()),
            Value::String(s) if s.len() > 300 => println!("{key} = {:?}...", &s[..300]),
            other => println!("{key} = {other:?}"),
        }
    }
    let mut tensors: Vec<_> = file.content.tensor_infos.iter().collect();
    tensors.sort_by_key(|(name, _)| name.to_string());
    for (name, info) in tensors.iter().filter(|(n, _)| !n.starts_with("blk.") || n.starts_with("blk.0.")) {
        println!("{name}: {:?} {:?}", info.ggml_dtype, info.shape);
    }
}
