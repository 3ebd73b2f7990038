//! `NativeError`: how an expected failure crosses to JavaScript, as a value (rolldown style).
//! `code` is stable: invalid_gguf, unsupported_architecture, unsupported_tokenizer,
//! device_unknown, device_unavailable, file_not_found, prompt_too_long, invalid_request,
//! template_error, model_closed, internal.

use napi_derive::napi;

use crate::error::EngineError;

#[napi(object)]
#[derive(Debug, Clone)]
pub struct NativeError {
    pub code: String,
    pub message: String,
}

impl From<EngineError> for NativeError {
    fn from(error: EngineError) -> Self {
        Self { code: error.code.as_str().to_string(), message: error.message }
    }
}

impl NativeError {
    pub fn internal(message: impl Into<String>) -> Self {
        Self { code: "internal".to_string(), message: message.into() }
    }
}

/// A panic's payload as text, for the `internal` error that reports it.
pub(crate) fn panic_message(payload: Box<dyn std::any::Any + Send>) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "a panic without a message".to_string()
    }
}
