//! `GenerationEvent`: what a generation sends to its callback, in order, through one
//! threadsafe function: `text` events while it runs, then exactly one `done` (with `result`) or
//! `error` (with `error`). One channel keeps the last text before the end.

use napi_derive::napi;

use crate::binding_generate_result::GenerateResult;
use crate::binding_native_error::NativeError;

#[napi(object)]
#[derive(Debug, Clone)]
pub struct GenerationEvent {
    /// text | done | error
    pub kind: String,
    pub text: Option<String>,
    pub result: Option<GenerateResult>,
    pub error: Option<NativeError>,
}

impl GenerationEvent {
    pub fn text(text: &str) -> Self {
        Self { kind: "text".into(), text: Some(text.to_string()), result: None, error: None }
    }
    pub fn done(result: GenerateResult) -> Self {
        Self { kind: "done".into(), text: None, result: Some(result), error: None }
    }
    pub fn error(error: NativeError) -> Self {
        Self { kind: "error".into(), text: None, result: None, error: Some(error) }
    }
}
