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

/// Which of llama.cpp's CPU builds the exact CPU path follows in this process: "avx512" or "avx2"
/// (the one llama.cpp loads on this CPU, unless `RBEE_CANDLE_GGML_SIMD` says otherwise). Tests
/// and benchmarks name it beside every agreement figure.
#[napi]
// Only JavaScript calls it, and napi registers it outside test builds.
#[cfg_attr(test, allow(dead_code))]
pub fn ggml_simd_level() -> String {
    match crate::ggml_math::SimdLevel::current() {
        crate::ggml_math::SimdLevel::Avx512 => "avx512".to_string(),
        crate::ggml_math::SimdLevel::Avx2 => "avx2".to_string(),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn cpu_always_and_each_gpu_backend_exactly_when_built_in() {
        let built = super::backends();
        assert_eq!(built[0], "cpu");
        assert_eq!(built.iter().any(|b| b == "cuda"), cfg!(feature = "cuda"));
        assert_eq!(built.iter().any(|b| b == "metal"), cfg!(feature = "metal"));
    }
}
