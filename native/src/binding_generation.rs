//! `Generation`: the handle `Model.generate` returns; `cancel()` stops it before its next token.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use napi_derive::napi;

#[napi]
pub struct Generation {
    pub(crate) cancelled: Arc<AtomicBool>,
}

#[napi]
impl Generation {
    /// Stops the generation before its next forward pass; it then ends with `finishReason: 'cancelled'`.
    #[napi]
    pub fn cancel(&self) {
        self.cancelled.store(true, Ordering::Relaxed);
    }

    #[napi(getter)]
    pub fn cancelled(&self) -> bool {
        self.cancelled.load(Ordering::Relaxed)
    }
}
