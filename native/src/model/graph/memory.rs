//! The graph decoder's device memory: one cuMemAlloc, sized at load for everything the decoder
//! holds (weights, KV cache, step and prefill buffers), carved into 256-byte aligned pieces.
//!
//! Why one: the driver hands out device memory in whole pages (2 MiB), and a model was hundreds of
//! allocations (an 8B model: 7 matrices and a few norms a layer, then the buffers), each rounded
//! up. At context 8192 on an H100 the process took 6,860 MiB, and 6,636 with one arena, where
//! llama-server took 6,144 (bench/results/2026-12-06-gpu-h100-prefill-ttft-vram.md); llama.cpp
//! puts a model's weights in one backend buffer.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use candle_core::cuda_backend::cudarc::driver::{result, sys, CudaContext};

use super::cu;
use crate::error::EngineResult;

/// Bytes after every piece, also past the arena's end: the word loads of the 2-byte-aligned
/// block types (Q4_0, Q5_0, Q8_0, Q6_K) may touch the 4-byte word holding a row's last bytes.
const SLACK: usize = 16;
const ALIGN: usize = 256;

/// One region, zeroed when made, handed out front to back; freed when the last piece goes.
pub(super) struct DeviceArena {
    ctx: Arc<CudaContext>,
    base: u64,
    size: usize,
    /// Bytes handed out, front to back (past `size` once it is full).
    used: AtomicUsize,
}

impl DeviceArena {
    pub(super) fn new(ctx: &Arc<CudaContext>, size: usize) -> EngineResult<Arc<Self>> {
        cu("bind", ctx.bind_to_thread())?;
        let base = cu("alloc", unsafe { result::malloc_sync(size + SLACK) })?;
        let arena = Arc::new(Self { ctx: ctx.clone(), base, size, used: AtomicUsize::new(0) });
        cu("memset", unsafe { result::memset_d8_sync(base, 0, size + SLACK) })?;
        Ok(arena)
    }

    /// What `bytes` takes in an arena: the piece, its slack, the alignment of the next one.
    pub(super) fn footprint(bytes: usize) -> usize {
        (bytes + SLACK).next_multiple_of(ALIGN)
    }

    /// `bytes` of zeroes, 256-byte aligned; past the arena's end, an allocation of its own.
    pub(super) fn zeroed(self: &Arc<Self>, bytes: usize) -> EngineResult<DeviceBuffer> {
        let offset = self.used.fetch_add(Self::footprint(bytes), Ordering::Relaxed);
        if offset + bytes <= self.size {
            return Ok(DeviceBuffer { ptr: self.base + offset as u64, owner: Owner::Arena(self.clone()) });
        }
        // The load's estimate fell short: still served, at a page's rounding.
        cu("bind", self.ctx.bind_to_thread())?;
        let ptr = cu("alloc", unsafe { result::malloc_sync(bytes + SLACK) })?;
        let buffer = DeviceBuffer { ptr, owner: Owner::Own(self.ctx.clone()) };
        cu("memset", unsafe { result::memset_d8_sync(ptr, 0, bytes + SLACK) })?;
        Ok(buffer)
    }

    pub(super) fn upload<T>(self: &Arc<Self>, data: &[T]) -> EngineResult<DeviceBuffer> {
        let buffer = self.zeroed(std::mem::size_of_val(data))?;
        cu("upload", unsafe { result::memcpy_htod_sync(buffer.ptr, data) })?;
        Ok(buffer)
    }
}

impl Drop for DeviceArena {
    fn drop(&mut self) {
        let _ = self.ctx.bind_to_thread();
        let _ = unsafe { result::free_sync(self.base) };
    }
}

enum Owner {
    /// A piece of an arena, which it keeps alive.
    Arena(#[allow(dead_code)] Arc<DeviceArena>),
    /// An allocation of its own, freed with it.
    Own(Arc<CudaContext>),
    /// Page-locked host memory mapped into the device's address space (its host address).
    Host(Arc<CudaContext>, usize),
}

/// A device region the kernels get the address of.
pub(super) struct DeviceBuffer {
    pub(super) ptr: u64,
    owner: Owner,
}

impl DeviceBuffer {
    /// `data` in page-locked host memory that kernels read over the bus: for tables a step reads
    /// a few rows of (an untied model's token embeddings, as llama.cpp keeps them on the host),
    /// so they take no VRAM. Followed by `SLACK` zero bytes, as an arena's pieces are.
    pub(super) fn host_mapped(ctx: &Arc<CudaContext>, data: &[u8]) -> EngineResult<Self> {
        const PORTABLE: u32 = 0x01;
        const DEVICEMAP: u32 = 0x02;
        cu("bind", ctx.bind_to_thread())?;
        let host = cu("host alloc", unsafe { result::malloc_host(data.len() + SLACK, PORTABLE | DEVICEMAP) })?;
        // Owned from here, so an error below frees it.
        let mut buffer = Self { ptr: 0, owner: Owner::Host(ctx.clone(), host as usize) };
        // SAFETY: `host` holds data.len() + SLACK bytes, page-locked and not shared yet.
        unsafe {
            std::ptr::copy_nonoverlapping(data.as_ptr(), host.cast::<u8>(), data.len());
            std::ptr::write_bytes(host.cast::<u8>().add(data.len()), 0, SLACK);
        }
        let mut device = 0;
        let status = unsafe { sys::cuMemHostGetDevicePointer_v2(&mut device, host, 0) };
        cu("host map", status.result())?;
        buffer.ptr = device;
        Ok(buffer)
    }
}

impl DeviceBuffer {
    /// The host address of a `host_mapped` buffer (None for device memory).
    pub(super) fn host_address(&self) -> Option<usize> {
        match self.owner {
            Owner::Host(_, host) => Some(host),
            _ => None,
        }
    }
}

impl Drop for DeviceBuffer {
    fn drop(&mut self) {
        match &self.owner {
            Owner::Own(ctx) => {
                let _ = ctx.bind_to_thread();
                let _ = unsafe { result::free_sync(self.ptr) };
            }
            Owner::Host(ctx, host) => {
                let _ = ctx.bind_to_thread();
                let _ = unsafe { result::free_host(*host as *mut std::ffi::c_void) };
            }
            Owner::Arena(_) => {}
        }
    }
}

/// With `RBEE_CANDLE_VRAM_TRACE` set, one stderr line with the device memory in use (the driver's
/// figure, all processes): read between the load's steps, it says what each step holds.
pub(super) fn trace_vram(stage: &str) {
    if !vram_tracing() {
        return;
    }
    if let Ok((free, total)) = result::mem_get_info() {
        eprintln!("[rbee vram] {:>8.1} MiB in use after {stage}", (total - free) as f64 / 1048576.0);
    }
}

pub(super) fn vram_tracing() -> bool {
    std::env::var_os("RBEE_CANDLE_VRAM_TRACE").is_some_and(|v| !v.is_empty())
}
