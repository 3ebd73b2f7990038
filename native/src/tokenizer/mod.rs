//! The tokenizer, built from the GGUF's own metadata and written to give llama.cpp's token ids:
//! `tokenizer.ggml.model = "llama"` is SentencePiece-style (scores, `▁` for spaces, `<0xNN>` byte
//! fallback), `"gpt2"` is byte-level BPE with ranked merges and a pre-tokenizer regex chosen by
//! `tokenizer.ggml.pre`. Special tokens (control, user-defined) are split out of the text first,
//! exactly as llama.cpp's `tokenizer_st_partition` does.

pub(crate) mod bpe;
mod spm;

use std::collections::{HashMap, HashSet};

use crate::error::{EngineError, EngineResult, ErrorCode};
use crate::gguf::Metadata;

pub const ATTR_UNKNOWN: u16 = 1 << 0;
pub const ATTR_UNUSED: u16 = 1 << 1;
pub const ATTR_NORMAL: u16 = 1 << 2;
pub const ATTR_CONTROL: u16 = 1 << 3;
pub const ATTR_USER_DEFINED: u16 = 1 << 4;
pub const ATTR_BYTE: u16 = 1 << 5;
pub const ATTR_LSTRIP: u16 = 1 << 7;
pub const ATTR_RSTRIP: u16 = 1 << 8;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenizerKind {
    /// SentencePiece-style (`tokenizer.ggml.model = "llama"`).
    Spm,
    /// Byte-level BPE (`tokenizer.ggml.model = "gpt2"`).
    Bpe,
}

/// Texts llama.cpp treats as end of generation whatever their ids (llama-vocab.cpp).
const EOG_TEXTS: &[&str] = &[
    "<|eot_id|>",
    "<|im_end|>",
    "<|end|>",
    "<|return|>",
    "<|call|>",
    "<|flush|>",
    "<|calls|>",
    "<end_of_turn>",
    "<|endoftext|>",
    "</s>",
    "<|eom_id|>",
    "<EOT>",
    "_<EOT>",
    "[EOT]",
    "[EOS]",
    "<|end_of_text|>",
    "<end_of_utterance>",
    "<eos>",
    "<turn|>",
    "<|tool_response>",
    "<\u{ff5c}end\u{2581}of\u{2581}sentence\u{ff5c}>",
    "[e~[",
];

pub struct Tokenizer {
    pub kind: TokenizerKind,
    pub model_name: String,
    pub pre: String,
    tokens: Vec<String>,
    scores: Vec<f32>,
    attrs: Vec<u16>,
    token_to_id: HashMap<String, u32>,
    /// Control, user-defined and unknown tokens, longest text first (llama.cpp's cache_special_tokens).
    special_cache: Vec<u32>,
    pub bos: Option<u32>,
    pub eos: Option<u32>,
    pub eot: Option<u32>,
    pub add_bos: bool,
    pub add_eos: bool,
    pub add_space_prefix: bool,
    eog: HashSet<u32>,
    bpe: Option<bpe::Bpe>,
    /// Byte-fallback tokens (`<0xNN>`), by byte value, for SentencePiece vocabularies.
    byte_tokens: [Option<u32>; 256],
}

fn attr_of_type(token_type: i64) -> u16 {
    match token_type {
        1 => ATTR_NORMAL,
        2 => ATTR_UNKNOWN,
        3 => ATTR_CONTROL,
        4 => ATTR_USER_DEFINED,
        5 => ATTR_UNUSED,
        6 => ATTR_BYTE,
        _ => 0,
    }
}

#[derive(Debug, Clone)]
enum Fragment {
    Text { start: usize, end: usize },
    Token(u32),
}

impl Tokenizer {
    pub fn from_metadata(md: &Metadata) -> EngineResult<Self> {
        let model_name = md
            .string("tokenizer.ggml.model")
            .ok_or_else(|| EngineError::new(ErrorCode::UnsupportedTokenizer, "the GGUF has no tokenizer (tokenizer.ggml.model is missing)"))?
            .to_string();
        let kind = match model_name.as_str() {
            "llama" => TokenizerKind::Spm,
            "gpt2" => TokenizerKind::Bpe,
            other => {
                return Err(EngineError::new(
                    ErrorCode::UnsupportedTokenizer,
                    format!("tokenizer model \"{other}\" is not supported (only \"llama\" SentencePiece and \"gpt2\" byte-level BPE)"),
                ))
            }
        };
        let pre = md.string("tokenizer.ggml.pre").unwrap_or("default").to_string();
        let tokens = md.strings("tokenizer.ggml.tokens")?.ok_or_else(|| EngineError::invalid_gguf("tokenizer.ggml.tokens is missing"))?;
        let n = tokens.len();
        let scores = match md.f32s("tokenizer.ggml.scores")? {
            Some(scores) if scores.len() >= n => scores,
            Some(scores) => return Err(EngineError::invalid_gguf(format!("{} token scores for {n} tokens", scores.len()))),
            None => vec![0.0; n],
        };
        let mut attrs = match md.i64s("tokenizer.ggml.token_type")? {
            Some(types) if types.len() >= n => types.iter().take(n).map(|t| attr_of_type(*t)).collect::<Vec<_>>(),
            Some(types) => return Err(EngineError::invalid_gguf(format!("{} token types for {n} tokens", types.len()))),
            None => vec![ATTR_NORMAL; n],
        };
        let mut token_to_id = HashMap::with_capacity(n);
        for (id, text) in tokens.iter().enumerate() {
            token_to_id.insert(text.clone(), id as u32);
        }

        // Defaults by tokenizer model, then the GGUF's keys (llama-vocab.cpp's order).
        let (mut bos, mut eos) = match kind {
            TokenizerKind::Spm => (Some(1u32), Some(2u32)),
            TokenizerKind::Bpe => (Some(11u32), Some(11u32)),
        };
        let (mut add_bos, mut add_space_prefix) = match kind {
            TokenizerKind::Spm => (true, true),
            TokenizerKind::Bpe => (false, false),
        };
        if kind == TokenizerKind::Bpe && matches!(pre.as_str(), "llama3" | "llama-v3" | "llama-bpe" | "falcon3" | "pixtral" | "lfm2") {
            add_bos = true;
        }
        if let Some(v) = md.bool_opt("tokenizer.ggml.add_space_prefix") {
            add_space_prefix = v;
        }
        let valid = |id: Option<u64>| id.filter(|id| (*id as usize) < n).map(|id| id as u32);
        if let Some(id) = md.u64_opt("tokenizer.ggml.bos_token_id")? {
            bos = valid(Some(id)).or(bos);
        }
        if let Some(id) = md.u64_opt("tokenizer.ggml.eos_token_id")? {
            eos = valid(Some(id)).or(eos);
        }
        let eot = valid(md.u64_opt("tokenizer.ggml.eot_token_id")?);
        let eom = valid(md.u64_opt("tokenizer.ggml.eom_token_id")?);
        if bos.is_some_and(|id| id as usize >= n) {
            bos = None;
        }
        if eos.is_some_and(|id| id as usize >= n) {
            eos = None;
        }
        if let Some(v) = md.bool_opt("tokenizer.ggml.add_bos_token") {
            add_bos = v;
        }
        let add_eos = md.bool_opt("tokenizer.ggml.add_eos_token").unwrap_or(false);

        let mut eog = HashSet::new();
        for text in EOG_TEXTS {
            if let Some(&id) = token_to_id.get(*text) {
                eog.insert(id);
                attrs[id as usize] |= ATTR_CONTROL;
            }
        }
        for id in [eos, eot, eom].into_iter().flatten() {
            eog.insert(id);
        }
        // llama.cpp's workarounds: gpt-oss's <|end|> and Gemma 4's </s> are not ends of generation.
        let has = |eog: &HashSet<u32>, text: &str| token_to_id.get(text).is_some_and(|id| eog.contains(id));
        if (has(&eog, "<|return|>") && has(&eog, "<|call|>") || has(&eog, "<|calls|>") && has(&eog, "<|flush|>")) && has(&eog, "<|end|>") {
            let id = token_to_id["<|end|>"];
            eog.remove(&id);
            attrs[id as usize] = ATTR_USER_DEFINED;
        }
        if has(&eog, "<|tool_response>") && has(&eog, "</s>") {
            let id = token_to_id["</s>"];
            eog.remove(&id);
            attrs[id as usize] = ATTR_NORMAL;
        }

        let mut special_cache: Vec<u32> = (0..n as u32).filter(|&id| attrs[id as usize] & (ATTR_CONTROL | ATTR_USER_DEFINED | ATTR_UNKNOWN) != 0).collect();
        special_cache.sort_by(|a, b| tokens[*b as usize].len().cmp(&tokens[*a as usize].len()));

        let mut byte_tokens = [None; 256];
        if kind == TokenizerKind::Spm {
            for (byte, slot) in byte_tokens.iter_mut().enumerate() {
                let hex = format!("<0x{byte:02X}>");
                *slot = token_to_id.get(&hex).copied().or_else(|| {
                    // llama.cpp falls back to the byte itself as a one-character token.
                    if byte < 128 {
                        token_to_id.get(&(byte as u8 as char).to_string()).copied()
                    } else {
                        None
                    }
                });
            }
        }

        let bpe = if kind == TokenizerKind::Bpe {
            let merges =
                md.strings("tokenizer.ggml.merges")?.ok_or_else(|| EngineError::invalid_gguf("tokenizer.ggml.merges is missing for a gpt2 tokenizer"))?;
            Some(bpe::Bpe::new(&pre, &merges)?)
        } else {
            None
        };

        Ok(Self {
            kind,
            model_name,
            pre,
            tokens,
            scores,
            attrs,
            token_to_id,
            special_cache,
            bos,
            eos,
            eot,
            add_bos,
            add_eos,
            add_space_prefix,
            eog,
            bpe,
            byte_tokens,
        })
    }

    pub fn vocab_size(&self) -> usize {
        self.tokens.len()
    }

    pub fn token_text(&self, id: u32) -> Option<&str> {
        self.tokens.get(id as usize).map(|s| s.as_str())
    }

    pub fn token_id(&self, text: &str) -> Option<u32> {
        self.token_to_id.get(text).copied()
    }

    pub fn attr(&self, id: u32) -> u16 {
        self.attrs.get(id as usize).copied().unwrap_or(0)
    }

    pub fn score(&self, id: u32) -> f32 {
        self.scores.get(id as usize).copied().unwrap_or(0.0)
    }

    pub fn is_eog(&self, id: u32) -> bool {
        self.eog.contains(&id)
    }

    pub fn eog_ids(&self) -> Vec<u32> {
        let mut ids: Vec<u32> = self.eog.iter().copied().collect();
        ids.sort_unstable();
        ids
    }

    /// Text to token ids, as `llama_tokenize(text, add_special, parse_special)`.
    pub fn encode(&self, text: &str, add_special: bool, parse_special: bool) -> Vec<u32> {
        let fragments = self.partition(text, parse_special);
        let mut output = Vec::with_capacity(text.len() / 3 + 2);
        match self.kind {
            TokenizerKind::Spm => {
                let mut prev_special = true;
                if add_special && self.add_bos {
                    if let Some(bos) = self.bos {
                        output.push(bos);
                    }
                }
                for fragment in &fragments {
                    match fragment {
                        Fragment::Text { start, end } => {
                            let mut piece = String::with_capacity(end - start + 4);
                            if self.add_space_prefix && prev_special {
                                piece.push(' ');
                            }
                            piece.push_str(&text[*start..*end]);
                            let escaped = piece.replace(' ', "\u{2581}");
                            spm::tokenize(self, &escaped, &mut output);
                            prev_special = false;
                        }
                        Fragment::Token(id) => {
                            output.push(*id);
                            prev_special = true;
                        }
                    }
                }
                if add_special && self.add_eos {
                    if let Some(eos) = self.eos {
                        output.push(eos);
                    }
                }
            }
            TokenizerKind::Bpe => {
                let bpe = self.bpe.as_ref().expect("a BPE tokenizer has merges");
                if add_special && self.add_bos {
                    if let Some(bos) = self.bos {
                        output.push(bos);
                    }
                }
                for fragment in &fragments {
                    match fragment {
                        Fragment::Text { start, end } => bpe.tokenize(self, &text[*start..*end], &mut output),
                        Fragment::Token(id) => output.push(*id),
                    }
                }
                if add_special && self.add_eos {
                    if let Some(eos) = self.eos {
                        output.push(eos);
                    }
                }
            }
        }
        output
    }

    /// Splits special tokens out of the text (control and unknown ones only when `parse_special`;
    /// user-defined ones always, as llama.cpp does).
    fn partition(&self, text: &str, parse_special: bool) -> Vec<Fragment> {
        let mut fragments = Vec::new();
        if text.is_empty() {
            return fragments;
        }
        fragments.push(Fragment::Text { start: 0, end: text.len() });
        let bytes = text.as_bytes();
        for &special in &self.special_cache {
            let attr = self.attrs[special as usize];
            if !parse_special && attr & (ATTR_CONTROL | ATTR_UNKNOWN) != 0 {
                continue;
            }
            let needle = self.tokens[special as usize].as_str();
            if needle.is_empty() {
                continue;
            }
            // Quick reject: the token's text occurs nowhere in the remaining raw text.
            let found_any = fragments.iter().any(|f| matches!(f, Fragment::Text { start, end } if text[*start..*end].contains(needle)));
            if !found_any {
                continue;
            }
            let mut next = Vec::with_capacity(fragments.len() + 2);
            for fragment in fragments {
                let Fragment::Text { start, end } = fragment else {
                    next.push(fragment);
                    continue;
                };
                let mut cursor = start;
                while cursor < end {
                    let Some(found) = text[cursor..end].find(needle) else { break };
                    let match_start = cursor + found;
                    let mut left_end = match_start;
                    if attr & ATTR_LSTRIP != 0 {
                        while left_end > cursor && bytes[left_end - 1].is_ascii_whitespace() {
                            left_end -= 1;
                        }
                    }
                    if left_end > cursor {
                        next.push(Fragment::Text { start: cursor, end: left_end });
                    }
                    next.push(Fragment::Token(special));
                    cursor = match_start + needle.len();
                    if attr & ATTR_RSTRIP != 0 {
                        while cursor < end && bytes[cursor].is_ascii_whitespace() {
                            cursor += 1;
                        }
                    }
                }
                if cursor < end {
                    next.push(Fragment::Text { start: cursor, end });
                }
            }
            fragments = next;
        }
        fragments
    }

    /// The bytes one token stands for (`llama_token_to_piece`); control and unknown tokens are
    /// empty unless `special`.
    pub fn token_bytes(&self, id: u32, special: bool) -> Vec<u8> {
        let Some(text) = self.tokens.get(id as usize) else { return Vec::new() };
        let attr = self.attrs[id as usize];
        if !special && attr & (ATTR_UNKNOWN | ATTR_CONTROL) != 0 {
            return Vec::new();
        }
        if attr & (ATTR_UNKNOWN | ATTR_CONTROL | ATTR_USER_DEFINED) != 0 {
            return text.as_bytes().to_vec();
        }
        match self.kind {
            TokenizerKind::Spm => {
                if attr & ATTR_BYTE != 0 {
                    return parse_byte_token(text).map(|b| vec![b]).unwrap_or_default();
                }
                if attr & ATTR_NORMAL != 0 {
                    return text.replace('\u{2581}', " ").into_bytes();
                }
                Vec::new()
            }
            TokenizerKind::Bpe => {
                if attr & ATTR_BYTE != 0 {
                    return parse_byte_token(text).map(|b| vec![b]).unwrap_or_default();
                }
                if attr & ATTR_NORMAL != 0 {
                    return bpe::decode_byte_level(text);
                }
                Vec::new()
            }
        }
    }

    /// Token ids back to bytes (UTF-8 unless the ids end inside a character).
    pub fn decode_bytes(&self, ids: &[u32], special: bool) -> Vec<u8> {
        let mut out = Vec::new();
        for &id in ids {
            out.extend_from_slice(&self.token_bytes(id, special));
        }
        out
    }

    pub fn decode(&self, ids: &[u32], special: bool) -> String {
        String::from_utf8_lossy(&self.decode_bytes(ids, special)).into_owned()
    }

    pub(crate) fn byte_token(&self, byte: u8) -> Option<u32> {
        self.byte_tokens[byte as usize]
    }
}

fn parse_byte_token(text: &str) -> Option<u8> {
    let hex = text.strip_prefix("<0x")?.strip_suffix('>')?;
    u8::from_str_radix(hex, 16).ok()
}

#[cfg(test)]
pub(crate) mod tests;
#[cfg(test)]
mod tests_llama_cpp_ids;
