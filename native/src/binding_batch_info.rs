//! `BatchInfo`: the model's batch now, for the worker's heartbeat.

use napi_derive::napi;

#[napi(object)]
#[derive(Debug, Clone, Copy)]
pub struct BatchInfo {
    /// Streams the model can serve at once.
    pub slots: u32,
    /// Slots in use.
    pub active: u32,
    /// Requests waiting for a slot.
    pub waiting: u32,
}
