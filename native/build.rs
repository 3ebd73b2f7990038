use std::path::{Path, PathBuf};
use std::process::Command;

fn main() {
    napi_build::setup();
    if std::env::var_os("CARGO_FEATURE_CUDA").is_some() {
        build_cuda_kernels();
    }
}

/// The decode kernels in kernels/ (one module per .cu file), compiled with nvcc into fatbins that
/// the crate embeds (`include_bytes!` of `$OUT_DIR/<name>.fatbin`) and cudarc loads at model load.
/// Each fatbin holds PTX for compute_80, which the driver JIT-compiles on any newer GPU, and
/// cubins for the architectures in RBEE_CUDA_ARCHS (default 90; "80,86,89,90" for all the
/// issue's targets, at the cost of minutes of nvcc on a small build machine). `--fmad=false` is
/// the kernels' build contract (kernels/README.md): a column's float result must not depend on
/// the batch width. nvcc: $NVCC, else $CUDA_ROOT/bin/nvcc, else on PATH (scripts/cuda-toolchain.sh
/// sets all three).
fn build_cuda_kernels() {
    let dir = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap()).join("kernels");
    let out = PathBuf::from(std::env::var("OUT_DIR").unwrap());
    for var in ["NVCC", "CUDA_ROOT", "RBEE_CUDA_ARCHS"] {
        println!("cargo:rerun-if-env-changed={var}");
    }
    for entry in std::fs::read_dir(&dir).expect("native/kernels") {
        println!("cargo:rerun-if-changed={}", entry.unwrap().path().display());
    }
    let nvcc = std::env::var_os("NVCC")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("CUDA_ROOT").map(|root| Path::new(&root).join("bin").join("nvcc")))
        .unwrap_or_else(|| PathBuf::from("nvcc"));
    let archs = std::env::var("RBEE_CUDA_ARCHS").unwrap_or_else(|_| "90".to_string());
    let mut gencode = vec!["-gencode".to_string(), "arch=compute_80,code=compute_80".to_string()];
    for arch in archs.split(',').map(str::trim).filter(|a| !a.is_empty()) {
        assert!(arch.chars().all(|c| c.is_ascii_digit()), "RBEE_CUDA_ARCHS: \"{arch}\" is not a compute capability like 90");
        gencode.push("-gencode".to_string());
        gencode.push(format!("arch=compute_{arch},code=sm_{arch}"));
    }
    let handles: Vec<_> = ["norm", "mmvq", "mmq", "rope", "attention", "sample", "prefill", "tp"]
        .into_iter()
        .map(|name| {
            let (nvcc, dir, out, gencode) = (nvcc.clone(), dir.clone(), out.clone(), gencode.clone());
            std::thread::spawn(move || {
                let status = Command::new(&nvcc)
                    .args(["-std=c++17", "-O3", "--fmad=false", "-fatbin"])
                    .args(&gencode)
                    .arg(format!("-I{}", dir.display()))
                    .arg(dir.join(format!("{name}.cu")))
                    .arg("-o")
                    .arg(out.join(format!("{name}.fatbin")))
                    .status()
                    .unwrap_or_else(|e| panic!("cannot run {} (the cuda feature needs nvcc: scripts/cuda-toolchain.sh): {e}", nvcc.display()));
                assert!(status.success(), "nvcc failed on kernels/{name}.cu ({status})");
            })
        })
        .collect();
    for handle in handles {
        handle.join().expect("nvcc thread");
    }
}
