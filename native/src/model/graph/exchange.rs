//! A tensor-parallel rank's exchange buffer (plan::TpLayout, kernels/tp.cu): one device
//! allocation of its own, shared with the other ranks' processes through a CUDA IPC handle, and
//! every other rank's buffer mapped here, so the step's exchange kernels read the peers' parts
//! straight from their GPUs (NVLink or PCIe peer access).

use std::sync::Arc;

use candle_core::cuda_backend::cudarc::driver::{result, sys, CudaContext};

use super::cu;
use super::plan::TpLayout;
use crate::error::{EngineError, EngineResult, ErrorCode};

/// Bytes of a CUDA IPC memory handle.
pub(super) const HANDLE_BYTES: usize = 64;

pub(super) struct Exchange {
    ctx: Arc<CudaContext>,
    pub(super) layout: TpLayout,
    rank: usize,
    /// This rank's allocation.
    own: u64,
    /// Every rank's buffer as mapped in this process (this rank's own at its index); empty
    /// until `open`.
    bases: Vec<u64>,
}

impl Exchange {
    /// Allocates and zeroes this rank's buffer (a counter of 0: nothing published).
    pub(super) fn new(ctx: &Arc<CudaContext>, layout: TpLayout, rank: usize) -> EngineResult<Self> {
        cu("bind", ctx.bind_to_thread())?;
        let own = cu("exchange alloc", unsafe { result::malloc_sync(layout.bytes()) })?;
        let exchange = Self { ctx: ctx.clone(), layout, rank, own, bases: Vec::new() };
        cu("exchange memset", unsafe { result::memset_d8_sync(own, 0, layout.bytes()) })?;
        Ok(exchange)
    }

    /// The handle another process opens this rank's buffer with.
    pub(super) fn handle(&self) -> EngineResult<Vec<u8>> {
        cu("bind", self.ctx.bind_to_thread())?;
        let mut handle: sys::CUipcMemHandle = unsafe { std::mem::zeroed() };
        cu("ipc handle", unsafe { sys::cuIpcGetMemHandle(&mut handle, self.own) }.result())?;
        Ok(handle.reserved.iter().map(|&b| b as u8).collect())
    }

    /// Maps every other rank's buffer from its handle (`handles[r]` is rank r's; this rank's own
    /// is skipped).
    pub(super) fn open(&mut self, handles: &[Vec<u8>]) -> EngineResult<()> {
        cu("bind", self.ctx.bind_to_thread())?;
        let mut bases = Vec::with_capacity(handles.len());
        for (rank, bytes) in handles.iter().enumerate() {
            if rank == self.rank {
                bases.push(self.own);
                continue;
            }
            if bytes.len() != HANDLE_BYTES {
                self.close_peers(&bases);
                return Err(EngineError::internal(format!("rank {rank} sent an exchange handle of {} bytes", bytes.len())));
            }
            let mut handle: sys::CUipcMemHandle = unsafe { std::mem::zeroed() };
            for (slot, &b) in handle.reserved.iter_mut().zip(bytes) {
                *slot = b as std::ffi::c_char;
            }
            let mut base = 0;
            let flags = sys::CUipcMem_flags::CU_IPC_MEM_LAZY_ENABLE_PEER_ACCESS as u32;
            if let Err(e) = unsafe { sys::cuIpcOpenMemHandle_v2(&mut base, handle, flags) }.result() {
                self.close_peers(&bases);
                return Err(EngineError::new(
                    ErrorCode::DeviceUnavailable,
                    format!("tensor-parallel group: cannot map rank {rank}'s GPU memory here ({e}); the group's GPUs need peer access (NVLink or PCIe P2P)"),
                ));
            }
            bases.push(base);
        }
        self.bases = bases;
        Ok(())
    }

    fn close_peers(&self, bases: &[u64]) {
        for (rank, &base) in bases.iter().enumerate() {
            if rank != self.rank {
                let _ = unsafe { sys::cuIpcCloseMemHandle(base) };
            }
        }
    }

    /// `offset` into rank `rank`'s buffer, as this process addresses it.
    pub(super) fn at(&self, rank: usize, offset: usize) -> u64 {
        let base = if rank == self.rank { self.own } else { self.bases.get(rank).copied().unwrap_or(0) };
        base + offset as u64
    }

    /// `offset` into this rank's own buffer.
    pub(super) fn own(&self, offset: usize) -> u64 {
        self.own + offset as u64
    }
}

impl Drop for Exchange {
    fn drop(&mut self) {
        let _ = self.ctx.bind_to_thread();
        self.close_peers(&self.bases);
        let _ = unsafe { result::free_sync(self.own) };
    }
}
