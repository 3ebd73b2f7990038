//! Memory figures for the heartbeat: the process's resident set on every platform we can read
//! it, and, when built with CUDA, the device's used and total memory from the driver.

/// Resident set size in bytes (Linux: /proc/self/status; elsewhere 0 = unknown).
pub fn rss_bytes() -> u64 {
    #[cfg(target_os = "linux")]
    {
        if let Ok(status) = std::fs::read_to_string("/proc/self/status") {
            for line in status.lines() {
                if let Some(rest) = line.strip_prefix("VmRSS:") {
                    let kb: u64 = rest.trim().trim_end_matches("kB").trim().parse().unwrap_or(0);
                    return kb * 1024;
                }
            }
        }
    }
    0
}

/// (used, total) bytes of the GPU behind `device`, or None on CPU (or when the driver cannot say).
#[allow(unused_variables)]
pub fn vram_bytes(device: &candle_core::Device) -> Option<(u64, u64)> {
    #[cfg(feature = "cuda")]
    {
        if let candle_core::Device::Cuda(cuda) = device {
            use candle_core::cuda_backend::cudarc::driver::result;
            let context = cuda.cuda_stream().context().clone();
            if context.bind_to_thread().is_ok() {
                if let Ok((free, total)) = result::mem_get_info() {
                    return Some(((total - free) as u64, total as u64));
                }
            }
        }
    }
    None
}
