//! `#[repr(C)]` mirrors of the kernels' argument structs (native/kernels/args.cuh), passed by
//! value through cuLaunchKernel. Device pointers are `u64` (CUdeviceptr), C `int` is `i32`,
//! `long long` is `i64`: the same sizes and offsets as the C layout, which the tests pin (a
//! mismatch would not fail at launch, it would feed the kernel garbage).

/// rbee_rmsnorm_q8_1. grid: rows; block: 1024; dynamic shared memory: K * 4 bytes.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct NormArgs {
    pub x: u64,
    pub pre: u64,
    pub w_pre: u64,
    pub w: u64,
    pub yq: u64,
    pub yds: u64,
    pub y: u64,
    pub ldx: i32,
    pub ldpre: i32,
    pub ldyq: i32,
    pub ldyds: i32,
    pub ldy: i32,
    pub k: i32,
    pub eps: f32,
}

#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct MmvqSeg {
    pub w: u64,
    pub out: u64,
    pub res: u64,
    pub rows: i32,
    pub ldo: i32,
    pub ldr: i32,
    pub pad: i32,
}

/// rbee_mmvq_<type>_<nc>. block: 128.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct MmvqArgs {
    pub seg: [MmvqSeg; 3],
    pub xq: u64,
    pub xds: u64,
    pub argmax_val: u64,
    pub argmax_idx: u64,
    pub w_stride: i64,
    pub nseg: i32,
    pub k: i32,
    pub ldxq: i32,
    pub ldxds: i32,
    pub warps_per_row: i32,
    pub ld_argmax: i32,
    pub softcap: f32,
    /// rbee_mmq_* only: the batch columns (the mat-vec kernels' count is in their name).
    pub ncols: i32,
}

/// rbee_mmvq_glu_<type>_<nc>. block: 256.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct GluArgs {
    pub w_gate: u64,
    pub w_up: u64,
    pub xq: u64,
    pub xds: u64,
    pub yq: u64,
    pub yds: u64,
    pub y: u64,
    pub w_stride: i64,
    pub k: i32,
    pub f: i32,
    pub ldxq: i32,
    pub ldxds: i32,
    pub ldyq: i32,
    pub ldyds: i32,
    pub ldy: i32,
    pub act: i32,
}

/// rbee_glu_q8_1 (the MMQ path's gate+up epilogue). grid: (F / 32, columns); block: 32.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct GluEpilogueArgs {
    pub g: u64,
    pub u: u64,
    pub yq: u64,
    pub yds: u64,
    pub y: u64,
    pub ldg: i32,
    pub ldyq: i32,
    pub ldyds: i32,
    pub ldy: i32,
    pub act: i32,
    pub pad: i32,
}

/// rbee_rope_kv. grid: (n_head + 2 * n_kv, rows); block: hd / 2.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct RopeArgs {
    pub q: u64,
    pub k: u64,
    pub v: u64,
    pub q_out: u64,
    pub k_cache: u64,
    pub v_cache: u64,
    pub pos: u64,
    pub slot: u64,
    pub inv_freq: u64,
    pub freq_factors: u64,
    pub q_norm: u64,
    pub k_norm: u64,
    pub slot_stride: i64,
    pub ldq: i32,
    pub ldk: i32,
    pub ldv: i32,
    pub ldqo: i32,
    pub n_head: i32,
    pub n_kv: i32,
    pub hd: i32,
    pub n_rot: i32,
    pub cap: i32,
    pub neox: i32,
    pub freq_scale: f32,
    pub eps: f32,
}

/// rbee_attn_split_<hd>. grid: (nsplit, n_kv, rows); block: 128.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct AttnArgs {
    pub q: u64,
    pub k_cache: u64,
    pub v_cache: u64,
    pub pos: u64,
    pub slot: u64,
    pub part_o: u64,
    pub part_ml: u64,
    pub slot_stride: i64,
    pub ldq: i32,
    pub n_head: i32,
    pub n_kv: i32,
    pub cap: i32,
    pub nsplit: i32,
    pub window: i32,
    pub scale: f32,
    pub pad: i32,
}

/// rbee_attn_reduce_<hd>. grid: (n_head, rows); block: hd.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct AttnReduceArgs {
    pub part_o: u64,
    pub part_ml: u64,
    pub out: u64,
    pub yq: u64,
    pub yds: u64,
    pub n_head: i32,
    pub nsplit: i32,
    pub ldo: i32,
    pub ldyq: i32,
    pub ldyds: i32,
    pub pad: i32,
}

/// The largest tensor-parallel group the exchange kernels take (args.cuh's TP_MAX_WORLD).
pub const TP_MAX_WORLD: usize = 8;

/// rbee_tp_reduce (grid: up to 32 blocks; block: 256) and rbee_tp_argmax (grid: rows; block: 32).
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct TpArgs {
    pub counter: [u64; TP_MAX_WORLD],
    pub part: [u64; TP_MAX_WORLD],
    pub part_idx: [u64; TP_MAX_WORLD],
    pub dst: u64,
    pub token: u64,
    pub pos: u64,
    pub err: u64,
    pub abort: u64,
    pub seq: u64,
    pub timeout_ns: i64,
    pub world: i32,
    pub rank: i32,
    pub index: i32,
    pub per_launch: i32,
    pub n: i32,
    pub add: i32,
    pub rows: i32,
    pub pad: i32,
    pub off: [i32; TP_MAX_WORLD],
}

#[cfg(feature = "cuda")]
mod device_repr {
    use candle_core::cuda_backend::cudarc::driver::DeviceRepr;
    // SAFETY: plain C structs of integers, floats and device addresses, laid out as args.cuh's.
    unsafe impl DeviceRepr for super::NormArgs {}
    unsafe impl DeviceRepr for super::MmvqArgs {}
    unsafe impl DeviceRepr for super::GluArgs {}
    unsafe impl DeviceRepr for super::GluEpilogueArgs {}
    unsafe impl DeviceRepr for super::RopeArgs {}
    unsafe impl DeviceRepr for super::AttnArgs {}
    unsafe impl DeviceRepr for super::AttnReduceArgs {}
    unsafe impl DeviceRepr for super::TpArgs {}
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::mem::{offset_of, size_of};

    // Sizes and offsets by the C rules (8-byte pointers and long long, 4-byte int and float,
    // struct size rounded up to its 8-byte alignment), counted from args.cuh by hand.
    #[test]
    fn norm_args_match_the_c_layout() {
        assert_eq!(offset_of!(NormArgs, ldx), 56);
        assert_eq!(offset_of!(NormArgs, k), 76);
        assert_eq!(offset_of!(NormArgs, eps), 80);
        assert_eq!(size_of::<NormArgs>(), 88);
    }

    #[test]
    fn mmvq_args_match_the_c_layout() {
        assert_eq!(size_of::<MmvqSeg>(), 40);
        assert_eq!(offset_of!(MmvqSeg, rows), 24);
        assert_eq!(offset_of!(MmvqArgs, xq), 120);
        assert_eq!(offset_of!(MmvqArgs, argmax_idx), 144);
        assert_eq!(offset_of!(MmvqArgs, w_stride), 152);
        assert_eq!(offset_of!(MmvqArgs, nseg), 160);
        assert_eq!(offset_of!(MmvqArgs, ld_argmax), 180);
        assert_eq!(offset_of!(MmvqArgs, softcap), 184);
        assert_eq!(offset_of!(MmvqArgs, ncols), 188);
        assert_eq!(size_of::<MmvqArgs>(), 192);
    }

    #[test]
    fn glu_args_match_the_c_layout() {
        assert_eq!(offset_of!(GluArgs, w_stride), 56);
        assert_eq!(offset_of!(GluArgs, k), 64);
        assert_eq!(offset_of!(GluArgs, act), 92);
        assert_eq!(size_of::<GluArgs>(), 96);
        assert_eq!(offset_of!(GluEpilogueArgs, ldg), 40);
        assert_eq!(offset_of!(GluEpilogueArgs, act), 56);
        assert_eq!(size_of::<GluEpilogueArgs>(), 64);
    }

    #[test]
    fn rope_args_match_the_c_layout() {
        assert_eq!(offset_of!(RopeArgs, slot_stride), 96);
        assert_eq!(offset_of!(RopeArgs, ldq), 104);
        assert_eq!(offset_of!(RopeArgs, n_head), 120);
        assert_eq!(offset_of!(RopeArgs, neox), 140);
        assert_eq!(offset_of!(RopeArgs, eps), 148);
        assert_eq!(size_of::<RopeArgs>(), 152);
    }

    #[test]
    fn attention_args_match_the_c_layout() {
        assert_eq!(offset_of!(AttnArgs, slot_stride), 56);
        assert_eq!(offset_of!(AttnArgs, ldq), 64);
        assert_eq!(offset_of!(AttnArgs, scale), 88);
        assert_eq!(size_of::<AttnArgs>(), 96);
        assert_eq!(offset_of!(AttnReduceArgs, n_head), 40);
        assert_eq!(size_of::<AttnReduceArgs>(), 64);
    }

    #[test]
    fn tp_args_match_the_c_layout() {
        assert_eq!(offset_of!(TpArgs, part), 64);
        assert_eq!(offset_of!(TpArgs, dst), 192);
        assert_eq!(offset_of!(TpArgs, abort), 224);
        assert_eq!(offset_of!(TpArgs, seq), 232);
        assert_eq!(offset_of!(TpArgs, timeout_ns), 240);
        assert_eq!(offset_of!(TpArgs, world), 248);
        assert_eq!(offset_of!(TpArgs, n), 264);
        assert_eq!(offset_of!(TpArgs, off), 280);
        assert_eq!(size_of::<TpArgs>(), 312);
    }
}
