//! Errors as values. Every failure the engine expects (a bad file, an unknown architecture, a
//! device that is not there, a prompt that does not fit) is an `EngineError` with a stable
//! `code`; it crosses the napi boundary as a plain `{code, message}` object, never as a throw.
//! Only the unexpected (a bug, a panic caught by `catch_unwind`) becomes a napi error.

use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    /// The file is not a GGUF, is truncated, or its metadata/tensors are inconsistent.
    InvalidGguf,
    /// The GGUF's `general.architecture` is not one this engine implements.
    UnsupportedArchitecture,
    /// The tokenizer model (`tokenizer.ggml.model`) or its data is not supported.
    UnsupportedTokenizer,
    /// The device string is not cpu, cuda:N or metal.
    DeviceUnknown,
    /// The device is well-formed but not usable here (no such GPU, or built without its feature).
    DeviceUnavailable,
    /// The file does not exist or cannot be read.
    FileNotFound,
    /// The prompt does not fit the context (with room for at least one generated token).
    PromptTooLong,
    /// A request field is invalid (temperature < 0, top_p outside (0, 1], ...).
    InvalidRequest,
    /// The chat template failed to parse or to render.
    TemplateError,
    /// The model was closed.
    ModelClosed,
    /// A weight's quantized type has no kernel on the chosen forward path (the graph path).
    UnsupportedQuantization,
    /// The model, its KV cache and buffers do not fit the GPU's free memory (checked before
    /// anything is allocated, so nothing is left on the card).
    InsufficientVram,
    /// Anything the engine did not expect (a Candle error mid-forward, a caught panic).
    Internal,
}

impl ErrorCode {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::InvalidGguf => "invalid_gguf",
            ErrorCode::UnsupportedArchitecture => "unsupported_architecture",
            ErrorCode::UnsupportedTokenizer => "unsupported_tokenizer",
            ErrorCode::DeviceUnknown => "device_unknown",
            ErrorCode::DeviceUnavailable => "device_unavailable",
            ErrorCode::FileNotFound => "file_not_found",
            ErrorCode::PromptTooLong => "prompt_too_long",
            ErrorCode::InvalidRequest => "invalid_request",
            ErrorCode::TemplateError => "template_error",
            ErrorCode::ModelClosed => "model_closed",
            ErrorCode::UnsupportedQuantization => "unsupported_quantization",
            ErrorCode::InsufficientVram => "insufficient_vram",
            ErrorCode::Internal => "internal",
        }
    }
}

#[derive(Debug, Clone)]
pub struct EngineError {
    pub code: ErrorCode,
    pub message: String,
}

impl EngineError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self { code, message: message.into() }
    }
    pub fn invalid_gguf(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::InvalidGguf, message)
    }
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Internal, message)
    }
    pub fn invalid_request(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::InvalidRequest, message)
    }
}

impl fmt::Display for EngineError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code.as_str(), self.message)
    }
}

impl std::error::Error for EngineError {}

/// A Candle error in the middle of a forward pass is not something a caller can fix.
impl From<candle_core::Error> for EngineError {
    fn from(error: candle_core::Error) -> Self {
        EngineError::internal(format!("candle: {error}"))
    }
}

pub type EngineResult<T> = Result<T, EngineError>;
