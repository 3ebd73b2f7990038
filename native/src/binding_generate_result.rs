//! `GenerateResult`: how a generation ended.

use napi_derive::napi;

use crate::engine::GenerateOutcome;

#[napi(object)]
#[derive(Debug, Clone)]
pub struct GenerateResult {
    /// The generated text (without the stop string or end-of-generation token).
    pub text: String,
    /// The generated token ids, in order.
    pub tokens: Vec<u32>,
    pub tokens_generated: u32,
    pub prompt_tokens: u32,
    /// stop (EOS or a stop string), length (max tokens or a full context), or cancelled.
    pub finish_reason: String,
    /// Wall time of the prompt evaluation and of the whole generation, milliseconds.
    pub prompt_ms: f64,
    pub total_ms: f64,
}

impl GenerateResult {
    pub fn from_outcome(outcome: GenerateOutcome, prompt_ms: f64, total_ms: f64) -> Self {
        Self {
            tokens_generated: outcome.tokens.len() as u32,
            text: outcome.text,
            tokens: outcome.tokens,
            prompt_tokens: outcome.prompt_tokens as u32,
            finish_reason: outcome.finish_reason.as_str().to_string(),
            prompt_ms,
            total_ms,
        }
    }
}
