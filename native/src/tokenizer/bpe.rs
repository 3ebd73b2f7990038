//! llama.cpp's byte-level BPE (llm_tokenizer_bpe_session): split the text with the
//! pre-tokenizer regexes of `tokenizer.ggml.pre`, map each word's bytes to GPT-2's printable
//! characters, then merge adjacent symbols by lowest merge rank (ties: leftmost).

use std::cmp::Ordering;
use std::collections::{BinaryHeap, HashMap};
use std::sync::OnceLock;

use fancy_regex::Regex;

use super::Tokenizer;
use crate::error::{EngineError, EngineResult, ErrorCode};

const REGEX_LLAMA3: &str =
    r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
const REGEX_QWEN2: &str =
    r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
const REGEX_QWEN35: &str =
    r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?[\p{L}\p{M}]+|\p{N}| ?[^\s\p{L}\p{M}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
const REGEX_GPT2: &str = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)";
const REGEXES_DEFAULT: &[&str] =
    &[r"[\p{P}\$\+<=>\^~\|]+", r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)", r"\p{N}+", r"[0-9][0-9][0-9]"];

pub(super) struct Bpe {
    regexes: Vec<Regex>,
    /// "left right" (the merge line as stored in the GGUF) to its rank.
    ranks: HashMap<String, usize>,
    ignore_merges: bool,
}

/// GPT-2's reversible byte to printable-character mapping.
fn byte_to_char() -> &'static [char; 256] {
    static TABLE: OnceLock<[char; 256]> = OnceLock::new();
    TABLE.get_or_init(|| {
        let mut table = ['\0'; 256];
        let mut extra = 0u32;
        for byte in 0..256u32 {
            let printable = (33..=126).contains(&byte) || (161..=172).contains(&byte) || (174..=255).contains(&byte);
            table[byte as usize] = if printable {
                char::from_u32(byte).unwrap()
            } else {
                extra += 1;
                char::from_u32(255 + extra).unwrap()
            };
        }
        table
    })
}

fn char_to_byte() -> &'static HashMap<char, u8> {
    static TABLE: OnceLock<HashMap<char, u8>> = OnceLock::new();
    TABLE.get_or_init(|| byte_to_char().iter().enumerate().map(|(b, c)| (*c, b as u8)).collect())
}

/// A byte-level token's text back to its bytes (llama_decode_text).
pub(super) fn decode_byte_level(text: &str) -> Vec<u8> {
    let table = char_to_byte();
    let mut out = Vec::with_capacity(text.len());
    for c in text.chars() {
        match table.get(&c) {
            Some(b) => out.push(*b),
            None => {
                let mut buf = [0u8; 4];
                out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
            }
        }
    }
    out
}

fn encode_byte_level(text: &str) -> String {
    let table = byte_to_char();
    text.bytes().map(|b| table[b as usize]).collect()
}

#[derive(PartialEq, Eq)]
struct Bigram {
    left: usize,
    right: usize,
    rank: usize,
    text: String,
}

impl PartialOrd for Bigram {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Bigram {
    /// Max-heap order: the lowest rank first; for equal ranks the smaller `left` first.
    fn cmp(&self, other: &Self) -> Ordering {
        other.rank.cmp(&self.rank).then_with(|| other.left.cmp(&self.left))
    }
}

#[derive(Clone, Copy)]
struct Symbol {
    start: usize,
    len: usize,
    prev: isize,
    next: isize,
}

impl Bpe {
    pub(super) fn new(pre: &str, merges: &[String]) -> EngineResult<Self> {
        let (patterns, ignore_merges): (Vec<&str>, bool) = match pre {
            "llama3" | "llama-v3" | "llama-bpe" | "falcon3" | "falcon-h1" | "pixtral" | "midm-2.0" | "lfm2" | "smaug-bpe" => (vec![REGEX_LLAMA3], true),
            "qwen2" | "deepseek-r1-qwen" | "stablelm2" | "hunyuan" | "kormo" => (vec![REGEX_QWEN2], false),
            "qwen35" => (vec![REGEX_QWEN35], false),
            "gpt-2" | "phi-2" | "olmo" | "mpt" | "jina-es" | "jina-de" => (vec![REGEX_GPT2], false),
            "default" => (REGEXES_DEFAULT.to_vec(), false),
            other => {
                return Err(EngineError::new(
                    ErrorCode::UnsupportedTokenizer,
                    format!("BPE pre-tokenizer \"{other}\" is not supported (llama3, qwen2, qwen35, gpt-2, default)"),
                ))
            }
        };
        let regexes = patterns
            .into_iter()
            .map(|p| Regex::new(p).map_err(|e| EngineError::internal(format!("pre-tokenizer regex: {e}"))))
            .collect::<EngineResult<Vec<_>>>()?;
        let mut ranks = HashMap::with_capacity(merges.len());
        for (rank, merge) in merges.iter().enumerate() {
            // llama.cpp splits at the first space after the first byte.
            if merge.len() > 1 && merge.as_bytes()[1..].contains(&b' ') {
                ranks.entry(merge.clone()).or_insert(rank);
            }
        }
        Ok(Self { regexes, ranks, ignore_merges })
    }

    fn rank(&self, left: &str, right: &str) -> Option<usize> {
        let mut key = String::with_capacity(left.len() + right.len() + 1);
        key.push_str(left);
        key.push(' ');
        key.push_str(right);
        self.ranks.get(&key).copied()
    }

    /// Splits with each regex in turn, keeping the text between matches as words too.
    fn split<'t>(&self, text: &'t str) -> Vec<&'t str> {
        let mut words = vec![text];
        for regex in &self.regexes {
            let mut next = Vec::with_capacity(words.len() * 2);
            for word in words {
                let mut last = 0;
                for found in regex.find_iter(word) {
                    let Ok(found) = found else { break };
                    if found.start() > last {
                        next.push(&word[last..found.start()]);
                    }
                    if found.end() > found.start() {
                        next.push(found.as_str());
                    }
                    last = found.end();
                }
                if last < word.len() {
                    next.push(&word[last..]);
                }
            }
            words = next;
        }
        words
    }

    pub(super) fn tokenize(&self, vocab: &Tokenizer, text: &str, output: &mut Vec<u32>) {
        for word in self.split(text) {
            let word = encode_byte_level(word);
            if self.ignore_merges {
                if let Some(id) = vocab.token_id(&word) {
                    output.push(id);
                    continue;
                }
            }
            let mut symbols: Vec<Symbol> = Vec::new();
            for (index, (start, c)) in (0_isize..).zip(word.char_indices()) {
                let len = c.len_utf8();
                let next = if start + len == word.len() { -1 } else { index + 1 };
                symbols.push(Symbol { start, len, prev: index - 1, next });
            }
            let mut queue = BinaryHeap::new();
            let add = |symbols: &Vec<Symbol>, queue: &mut BinaryHeap<Bigram>, left: isize, right: isize| {
                if left < 0 || right < 0 {
                    return;
                }
                let (l, r) = (symbols[left as usize], symbols[right as usize]);
                let left_text = &word[l.start..l.start + l.len];
                let right_text = &word[r.start..r.start + r.len];
                if let Some(rank) = self.rank(left_text, right_text) {
                    queue.push(Bigram { left: left as usize, right: right as usize, rank, text: format!("{left_text}{right_text}") });
                }
            };
            for i in 1..symbols.len() {
                add(&symbols, &mut queue, i as isize - 1, i as isize);
            }
            while let Some(bigram) = queue.pop() {
                let (l, r) = (symbols[bigram.left], symbols[bigram.right]);
                if l.len == 0 || r.len == 0 {
                    continue;
                }
                // Outdated if either side has changed since the pair was queued.
                if l.start + l.len != r.start || word[l.start..r.start + r.len] != bigram.text {
                    continue;
                }
                symbols[bigram.left].len += r.len;
                symbols[bigram.right].len = 0;
                symbols[bigram.left].next = r.next;
                if r.next >= 0 {
                    symbols[r.next as usize].prev = bigram.left as isize;
                }
                let merged = symbols[bigram.left];
                add(&symbols, &mut queue, merged.prev, bigram.left as isize);
                add(&symbols, &mut queue, bigram.left as isize, merged.next);
            }
            for symbol in symbols.iter().filter(|s| s.len > 0) {
                let piece = &word[symbol.start..symbol.start + symbol.len];
                match vocab.token_id(piece) {
                    Some(id) => output.push(id),
                    None => {
                        // Not a token: one token per byte-level character, skipping unknown ones.
                        for c in piece.chars() {
                            let mut buf = [0u8; 4];
                            if let Some(id) = vocab.token_id(c.encode_utf8(&mut buf)) {
                                output.push(id);
                            }
                        }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
pub(crate) fn byte_level_byte(byte: u8) -> char {
    byte_to_char()[byte as usize]
}
