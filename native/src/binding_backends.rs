//! `backends()`: the devices this build can run on, so the hive can tell whether the candle engine
//! is a choice for a device before it spawns a worker that would fail to load.

use napi_derive::napi;

/// "cpu" always; "cuda" and "metal" when built with that feature (the device itself may still be
/// missing at run time: loading on it then fails with `device_unavailable`).
#[napi]
pub fn backends() -> Vec<String> {
    let mut built = vec!["cpu".to_string()];
    if cfg!(feature = "cuda") {
        built.push("cuda".to_string());
    }
    if cfg!(feature = "metal") {
        built.push("metal".to_string());
    }
    built
}
