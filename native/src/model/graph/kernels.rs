//! The decode kernels: the fatbins build.rs embeds (one module per .cu file), loaded on the
//! device, and each kernel function looked up by name once.

use std::collections::HashMap;
use std::sync::Arc;

use candle_core::cuda_backend::cudarc::driver::{CudaContext, CudaFunction, CudaModule};
use candle_core::cuda_backend::cudarc::nvrtc::Ptx;

use super::cu;
use crate::error::{EngineError, EngineResult, ErrorCode};

/// The kernels' fatbins (build.rs), one module per .cu file.
const MODULES: [(&str, &[u8]); 8] = [
    ("norm", include_bytes!(concat!(env!("OUT_DIR"), "/norm.fatbin"))),
    ("mmvq", include_bytes!(concat!(env!("OUT_DIR"), "/mmvq.fatbin"))),
    ("rope", include_bytes!(concat!(env!("OUT_DIR"), "/rope.fatbin"))),
    ("attention", include_bytes!(concat!(env!("OUT_DIR"), "/attention.fatbin"))),
    ("sample", include_bytes!(concat!(env!("OUT_DIR"), "/sample.fatbin"))),
    ("prefill", include_bytes!(concat!(env!("OUT_DIR"), "/prefill.fatbin"))),
    ("mmq", include_bytes!(concat!(env!("OUT_DIR"), "/mmq.fatbin"))),
    ("tp", include_bytes!(concat!(env!("OUT_DIR"), "/tp.fatbin"))),
];

/// prefill.cu's kernels (the GEMM prefill's helpers).
pub(super) const PREFILL_KERNELS: [&str; 5] = ["rbee_dequant_f32", "rbee_dequant_bf16", "rbee_f32_to_bf16", "rbee_glu_f32", "rbee_add_bias"];

fn module_of(kernel: &str) -> usize {
    if kernel.starts_with("rbee_rmsnorm") || kernel.starts_with("rbee_quantize") {
        0
    } else if kernel.starts_with("rbee_mmvq") {
        1
    } else if kernel.starts_with("rbee_rope") {
        2
    } else if kernel.starts_with("rbee_attn") {
        3
    } else if PREFILL_KERNELS.contains(&kernel) {
        5
    } else if kernel.starts_with("rbee_mmq") || kernel == "rbee_glu_q8_1" {
        6
    } else if kernel.starts_with("rbee_tp_") {
        7
    } else {
        4
    }
}

pub(super) struct Kernels {
    modules: Vec<Arc<CudaModule>>,
    functions: HashMap<String, CudaFunction>,
}

impl Kernels {
    /// None loaded yet: the decoder is built before its kernels are (a placeholder until `load`).
    pub(super) fn empty() -> Self {
        Self { modules: Vec::new(), functions: HashMap::new() }
    }

    pub(super) fn load(ctx: &Arc<CudaContext>) -> EngineResult<Self> {
        let modules = MODULES
            .iter()
            .map(|(name, image)| {
                ctx.load_module(Ptx::from_binary(image.to_vec()))
                    .map_err(|e| EngineError::new(ErrorCode::DeviceUnavailable, format!("loading the {name} kernels on this GPU: {e}")))
            })
            .collect::<EngineResult<Vec<_>>>()?;
        Ok(Self { modules, functions: HashMap::new() })
    }

    pub(super) fn require(&mut self, name: &str) -> EngineResult<()> {
        if !self.functions.contains_key(name) {
            let function = cu(name, self.modules[module_of(name)].load_function(name))?;
            self.functions.insert(name.to_string(), function);
        }
        Ok(())
    }

    pub(super) fn get(&self, name: &str) -> EngineResult<&CudaFunction> {
        self.functions.get(name).ok_or_else(|| EngineError::internal(format!("kernel {name} was not loaded")))
    }
}
