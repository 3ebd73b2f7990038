//! llama.cpp's SentencePiece-style tokenizer (llm_tokenizer_spm_session): start from UTF-8
//! characters, repeatedly merge the adjacent pair whose merged text is a token with the highest
//! score (ties: leftmost), then resegment pieces that are not tokens into the pairs they came
//! from, down to byte-fallback tokens.

use std::cmp::Ordering;
use std::collections::{BinaryHeap, HashMap};

use super::Tokenizer;

#[derive(Clone, Copy)]
struct Symbol {
    start: usize,
    len: usize,
    prev: isize,
    next: isize,
}

struct Bigram {
    left: usize,
    right: usize,
    score: f32,
    size: usize,
}

impl PartialEq for Bigram {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}
impl Eq for Bigram {}
impl PartialOrd for Bigram {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Bigram {
    /// Max-heap order: the higher score first; for equal scores the smaller `left` first.
    fn cmp(&self, other: &Self) -> Ordering {
        self.score.partial_cmp(&other.score).unwrap_or(Ordering::Equal).then_with(|| other.left.cmp(&self.left))
    }
}

fn utf8_len(first: u8) -> usize {
    const LOOKUP: [usize; 16] = [1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 3, 4];
    LOOKUP[(first >> 4) as usize]
}

struct Session<'a> {
    vocab: &'a Tokenizer,
    text: &'a str,
    symbols: Vec<Symbol>,
    queue: BinaryHeap<Bigram>,
    rev_merge: HashMap<&'a str, (usize, usize)>,
}

impl<'a> Session<'a> {
    fn piece(&self, start: usize, len: usize) -> &'a str {
        // Symbols start on UTF-8 boundaries of valid text, so every slice is valid.
        &self.text[start..start + len]
    }

    fn try_add_bigram(&mut self, left: isize, right: isize) {
        if left < 0 || right < 0 {
            return;
        }
        let (l, r) = (self.symbols[left as usize], self.symbols[right as usize]);
        let text = self.piece(l.start, l.len + r.len);
        let Some(id) = self.vocab.token_id(text) else { return };
        if id as usize >= self.vocab.vocab_size() {
            return;
        }
        self.queue.push(Bigram { left: left as usize, right: right as usize, score: self.vocab.score(id), size: text.len() });
        self.rev_merge.insert(text, (left as usize, right as usize));
    }

    fn resegment(&self, symbol: Symbol, output: &mut Vec<u32>) {
        let text = self.piece(symbol.start, symbol.len);
        if let Some(id) = self.vocab.token_id(text) {
            output.push(id);
            return;
        }
        match self.rev_merge.get(text) {
            None => {
                for &byte in text.as_bytes() {
                    if let Some(id) = self.vocab.byte_token(byte) {
                        output.push(id);
                    }
                }
            }
            Some(&(left, right)) => {
                self.resegment(self.symbols[left], output);
                self.resegment(self.symbols[right], output);
            }
        }
    }
}

pub(super) fn tokenize(vocab: &Tokenizer, text: &str, output: &mut Vec<u32>) {
    if text.is_empty() {
        return;
    }
    let bytes = text.as_bytes();
    let mut symbols = Vec::with_capacity(text.len());
    let mut offset = 0;
    let mut index: isize = 0;
    while offset < bytes.len() {
        let len = utf8_len(bytes[offset]).min(bytes.len() - offset);
        let start = offset;
        offset += len;
        symbols.push(Symbol { start, len, prev: index - 1, next: if offset == bytes.len() { -1 } else { index + 1 } });
        index += 1;
    }
    let mut session = Session { vocab, text, symbols, queue: BinaryHeap::new(), rev_merge: HashMap::new() };
    for i in 1..session.symbols.len() {
        session.try_add_bigram(i as isize - 1, i as isize);
    }
    while let Some(bigram) = session.queue.pop() {
        let left = session.symbols[bigram.left];
        let right = session.symbols[bigram.right];
        if left.len == 0 || right.len == 0 || left.len + right.len != bigram.size {
            continue;
        }
        session.symbols[bigram.left].len += right.len;
        session.symbols[bigram.right].len = 0;
        session.symbols[bigram.left].next = right.next;
        if right.next >= 0 {
            session.symbols[right.next as usize].prev = bigram.left as isize;
        }
        let merged = session.symbols[bigram.left];
        session.try_add_bigram(merged.prev, bigram.left as isize);
        session.try_add_bigram(bigram.left as isize, merged.next);
    }
    let mut i: isize = 0;
    while i != -1 {
        let symbol = session.symbols[i as usize];
        session.resegment(symbol, output);
        i = symbol.next;
    }
}
