//! `GenerateOptions`: one generation request. Exactly one of `prompt` (raw text, continued),
//! `messages` (through the chat template) or `tokens` (ids) is given.

use napi_derive::napi;

use crate::binding_chat_message::ChatMessage;
use crate::engine::{GenerateRequest, Prompt};
use crate::error::{EngineError, EngineResult};
use crate::sampling::SamplingParams;

#[napi(object)]
#[derive(Debug, Clone)]
pub struct GenerateOptions {
    pub prompt: Option<String>,
    pub messages: Option<Vec<ChatMessage>>,
    pub tokens: Option<Vec<u32>>,
    pub max_tokens: u32,
    /// 0 (the default) is greedy.
    pub temperature: Option<f64>,
    pub top_k: Option<u32>,
    pub top_p: Option<f64>,
    /// The same seed gives the same text; absent or negative: a fresh seed.
    pub seed: Option<f64>,
    pub stop: Option<Vec<String>>,
}

impl GenerateOptions {
    pub fn into_request(self) -> EngineResult<GenerateRequest> {
        let prompt = match (self.prompt, self.messages, self.tokens) {
            (Some(text), None, None) => Prompt::Text(text),
            (None, Some(messages), None) => Prompt::Chat(messages.into_iter().map(Into::into).collect()),
            (None, None, Some(tokens)) => Prompt::Tokens(tokens),
            _ => return Err(EngineError::invalid_request("give exactly one of prompt, messages or tokens")),
        };
        let seed = match self.seed {
            Some(seed) if seed.is_finite() && seed >= 0.0 => Some(seed as u64),
            _ => None,
        };
        let sampling = SamplingParams {
            temperature: self.temperature.unwrap_or(0.0) as f32,
            top_k: self.top_k.filter(|k| *k > 0).map(|k| k as usize),
            top_p: self.top_p.map(|p| p as f32),
            seed,
        };
        sampling.validate()?;
        Ok(GenerateRequest { prompt, max_tokens: self.max_tokens as usize, sampling, stop: self.stop.unwrap_or_default() })
    }
}
