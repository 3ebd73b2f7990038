// The kernels' argument structs (passed by value; plain C layout, every pointer 8 bytes and every
// int 4, so a #[repr(C)] Rust mirror passes them through cudarc as they are) and the extern "C"
// entry points, for host code that launches them (bench/gpu/kernels/harness.cu, and the crate).
//
// Conventions: "ld*" is a row stride in elements of the pointed type (q8_1 value planes: bytes,
// a multiple of 16; ds planes: half2). Batch rows ("columns" of a matrix-vector product) are
// rows of these arrays. Optional pointers may be null. Nothing is global: a kernel touches only
// what its arguments name, so a decode step can be split over GPUs by offsetting pointers
// (rows of a weight, heads of an attention layer, slots of a cache).
#pragma once
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <stdint.h>

namespace rbee {

// rbee_rmsnorm_q8_1 — grid: rows; block: 1024; dynamic shared memory: K * 4 bytes.
struct NormArgs {
  float* x;              // [rows][ldx] residual stream; written when `pre` is given
  const float* pre;      // optional [rows][ldpre]: x += rmsnorm(pre) * w_pre first (Gemma's post norms)
  const float* w_pre;
  const float* w;        // [K] the norm's weight
  int8_t* yq;            // optional [rows][ldyq] q8_1 values of rmsnorm(x) * w
  half2* yds;            // [rows][ldyds] their {d, s} (when yq is given)
  float* y;              // optional [rows][ldy] the same in f32
  int ldx, ldpre, ldyq, ldyds, ldy;
  int K;                 // a multiple of 32
  float eps;
};

// rbee_mmvq_<type>_<nc> — block: 128; grid: up to ceil(total rows / (4 / warps_per_row)).
struct MmvqSeg {
  const uint8_t* w;  // first row of this segment's weights
  float* out;        // [c][ldo]: row r of the segment goes to out[c * ldo + r]
  const float* res;  // optional residual, read at res[c * ldr + r] (may equal out)
  int rows, ldo, ldr, pad;
};

struct MmvqArgs {
  MmvqSeg seg[3];
  const int8_t* xq;    // activations: [c][ldxq] int8 (16-byte aligned rows)
  const half2* xds;    // [c][ldxds] {d, s}
  float* argmax_val;   // optional: per block and column, the best (value, row) of the block's rows
  int* argmax_idx;     //   at [c * ld_argmax + blockIdx.x]; rows are numbered over all segments
  long long w_stride;  // bytes from one weight row to the next (>= K / QK * block bytes)
  int nseg, K, ldxq, ldxds, warps_per_row, ld_argmax;
  float softcap;       // > 0: v = tanh(v / softcap) * softcap (Gemma's final logits)
  int ncols;           // rbee_mmq_* only: the batch columns (the mmvq kernels' count is in their name)
};

// rbee_mmvq_glu_<type>_<nc> — block: 256; grid: up to F / 32.
struct GluArgs {
  const uint8_t* w_gate;  // F rows each
  const uint8_t* w_up;
  const int8_t* xq;
  const half2* xds;
  int8_t* yq;             // [c][ldyq] q8_1 of act(gate) * up, F values per column
  half2* yds;             // [c][ldyds]
  float* y;               // optional [c][ldy] the same in f32
  long long w_stride;
  int K, F, ldxq, ldxds, ldyq, ldyds, ldy;
  int act;                // 0: SiLU, 1: GELU (tanh)
};

// rbee_rope_kv — grid: (n_head + 2 * n_kv, rows); block: hd / 2.
// Q heads: optional RMS norm over the head (Gemma 3's q_norm), RoPE, written to q_out (f32).
// K heads: optional k_norm, RoPE, written as f16 to k_cache at the row's slot and position.
// V heads: written as f16 to v_cache. Caches: [slot][n_kv][cap][hd] (slot_stride = n_kv*cap*hd).
// theta_i = freq_scale * (pos * inv_freq[i] / freq_factors[i]); pairs (2i, 2i+1) or, with neox,
// (i, i + n_rot/2); dims from n_rot on pass through.
struct RopeArgs {
  const float* q;              // [rows][ldq] heads contiguous, hd each
  const float* k;              // [rows][ldk]
  const float* v;              // [rows][ldv]
  float* q_out;                // [rows][ldqo] (may equal q)
  half* k_cache;
  half* v_cache;
  const int* pos;              // [rows] position of the row's token
  const int* slot;             // [rows] cache slot of the row
  const float* inv_freq;       // [n_rot/2] base^(-2i/n_rot)
  const float* freq_factors;   // optional [n_rot/2]
  const float* q_norm;         // optional [hd]
  const float* k_norm;         // optional [hd]
  long long slot_stride;       // elements from one slot to the next
  int ldq, ldk, ldv, ldqo;
  int n_head, n_kv, hd, n_rot, cap, neox;
  float freq_scale, eps;
};

// rbee_attn_split_<hd> — grid: (nsplit, n_kv, rows); block: 128. Flash-decoding: split s of
// the row's visible keys [first, pos] (first = pos - window + 1 with a sliding window) goes to
// block s, which serves all n_head / n_kv query heads of its KV head and writes the unnormalized
// output and {max, sum} of its part.
struct AttnArgs {
  const float* q;        // [rows][ldq], head h at h * hd (after RoPE)
  const half* k_cache;   // [slot][n_kv][cap][hd]
  const half* v_cache;
  const int* pos;        // [rows]
  const int* slot;       // [rows]
  float* part_o;         // [rows][n_head][nsplit][hd]
  float2* part_ml;       // [rows][n_head][nsplit] {max, sum}
  long long slot_stride;
  int ldq, n_head, n_kv, cap, nsplit, window;  // window 0: none
  float scale;           // applied to q.k
  int pad;
};

// rbee_attn_reduce_<hd> — grid: (n_head, rows); block: hd. Merges the splits, writes the head's
// output in f32 (optional) and as q8_1 planes (the o-projection's input).
struct AttnReduceArgs {
  const float* part_o;
  const float2* part_ml;
  float* out;            // optional [rows][ldo], head h at h * hd
  int8_t* yq;            // optional [rows][ldyq]
  half2* yds;            // [rows][ldyds] (when yq is given)
  int n_head, nsplit, ldo, ldyq, ldyds, pad;
};

// rbee_glu_q8_1 — grid: (F / 32, columns); block: 32. The MMQ path's gate+up epilogue.
struct GluEpilogueArgs {
  const float* g;        // [c][ldg] gate products
  const float* u;        // [c][ldg] up products
  int8_t* yq;            // [c][ldyq] q8_1 of act(g) * u
  half2* yds;            // [c][ldyds]
  float* y;              // optional [c][ldy] the same in f32
  int ldg, ldyq, ldyds, ldy;
  int act;               // 0: SiLU, 1: GELU (tanh)
  int pad;
};

// Tensor parallelism (tp.cu): the largest group.
constexpr int TP_MAX_WORLD = 8;

// rbee_tp_reduce — grid: up to 32 blocks; block: 256.
//   dst[i] = (add ? dst[i] : 0) + ((part[0][i] + part[1][i]) + ... + part[world - 1][i]), i < n.
// rbee_tp_argmax — grid: rows; block: 32.
//   rank 0: the greedy token of each row from every rank's best (value, vocabulary-local id) of
//   its slice, part[r][row] and part_idx[r][row], with rank r's slice starting at off[r]: the
//   largest value, the lowest id on ties, as rbee_argmax_final picks over one GPU's partials;
//   token[row] = it, pos[row] += 1. Other ranks publish their best and return.
struct TpArgs {
  unsigned long long* counter[TP_MAX_WORLD];  // each rank's published-exchange counter (peer memory)
  const float* part[TP_MAX_WORLD];            // each rank's part of this exchange (peer memory)
  const int* part_idx[TP_MAX_WORLD];          // argmax: each rank's best ids
  float* dst;                                 // reduce
  int* token;                                 // argmax (rank 0)
  int* pos;                                   //   optional
  int* err;                                   // this rank's error word
  const int* abort;                           // optional: host-mapped, non-zero when the host gives up on the group
  const unsigned long long* seq;              // the launch's sequence number (device memory)
  long long timeout_ns;
  int world, rank, index, per_launch;         // this exchange's index among the launch's `per_launch`
  int n, add, rows, pad;
  int off[TP_MAX_WORLD];
};

}  // namespace rbee

#define RBEE_DECLARE_MMVQ(name)                                                                      \
  extern "C" __global__ void rbee_mmvq_##name##_1(rbee::MmvqArgs);                                   \
  extern "C" __global__ void rbee_mmvq_##name##_2(rbee::MmvqArgs);                                   \
  extern "C" __global__ void rbee_mmvq_##name##_3(rbee::MmvqArgs);                                   \
  extern "C" __global__ void rbee_mmvq_##name##_4(rbee::MmvqArgs);                                   \
  extern "C" __global__ void rbee_mmvq_##name##_5(rbee::MmvqArgs);                                   \
  extern "C" __global__ void rbee_mmvq_##name##_6(rbee::MmvqArgs);                                   \
  extern "C" __global__ void rbee_mmvq_##name##_7(rbee::MmvqArgs);                                   \
  extern "C" __global__ void rbee_mmvq_##name##_8(rbee::MmvqArgs);                                   \
  extern "C" __global__ void rbee_mmvq_glu_##name##_1(rbee::GluArgs);                                \
  extern "C" __global__ void rbee_mmvq_glu_##name##_2(rbee::GluArgs);                                \
  extern "C" __global__ void rbee_mmvq_glu_##name##_3(rbee::GluArgs);                                \
  extern "C" __global__ void rbee_mmvq_glu_##name##_4(rbee::GluArgs);                                \
  extern "C" __global__ void rbee_mmvq_glu_##name##_5(rbee::GluArgs);                                \
  extern "C" __global__ void rbee_mmvq_glu_##name##_6(rbee::GluArgs);                                \
  extern "C" __global__ void rbee_mmvq_glu_##name##_7(rbee::GluArgs);                                \
  extern "C" __global__ void rbee_mmvq_glu_##name##_8(rbee::GluArgs);                                \
  extern "C" __global__ void rbee_mmvq_isums_##name(const uint8_t*, long long, int, int, const int8_t*, int, int, int*);

RBEE_DECLARE_MMVQ(q4_0)
RBEE_DECLARE_MMVQ(q5_0)
RBEE_DECLARE_MMVQ(q8_0)
RBEE_DECLARE_MMVQ(q4_k)
RBEE_DECLARE_MMVQ(q5_k)
RBEE_DECLARE_MMVQ(q6_k)

// mmq.cu: rbee_mmq_<type>_w<warps per row>_c<columns per block> — block: 256; grid: (row tiles of
// 16, ceil(ncols / c)). Bit-identical per column to rbee_mmvq_<type>_1 with the same warps per row.
#define RBEE_DECLARE_MMQ(name)                                             \
  extern "C" __global__ void rbee_mmq_##name##_w1_c16(rbee::MmvqArgs);     \
  extern "C" __global__ void rbee_mmq_##name##_w1_c32(rbee::MmvqArgs);     \
  extern "C" __global__ void rbee_mmq_##name##_w2_c16(rbee::MmvqArgs);
RBEE_DECLARE_MMQ(q4_k)
RBEE_DECLARE_MMQ(q5_k)
RBEE_DECLARE_MMQ(q6_k)
extern "C" __global__ void rbee_glu_q8_1(rbee::GluEpilogueArgs);

extern "C" __global__ void rbee_rmsnorm_q8_1(rbee::NormArgs);
extern "C" __global__ void rbee_quantize_q8_1(const float* x, int ldx, int K, int8_t* yq, int ldyq, half2* yds, int ldyds);
extern "C" __global__ void rbee_rope_kv(rbee::RopeArgs);
extern "C" __global__ void rbee_attn_split_64(rbee::AttnArgs);
extern "C" __global__ void rbee_attn_split_128(rbee::AttnArgs);
extern "C" __global__ void rbee_attn_split_256(rbee::AttnArgs);
extern "C" __global__ void rbee_attn_reduce_64(rbee::AttnReduceArgs);
extern "C" __global__ void rbee_attn_reduce_128(rbee::AttnReduceArgs);
extern "C" __global__ void rbee_attn_reduce_256(rbee::AttnReduceArgs);
// grid: (ceil(K / 256), rows); block: 256. out[r][e] = scale * dequant(table[tokens[r]])[e].
extern "C" __global__ void rbee_embed_rows(int type, const uint8_t* table, long long row_bytes, const int* tokens, int K,
                                           float scale, float* out, int ldo);
// grid: rows; block: 256. Greedy token of each row from the head's per-block partials (ties: the
// lower id). Writes token[r] (and the value when val_out is given); advances pos[r] when given.
// prefill.cu: around the prefill chunk's cuBLAS GEMMs. Dequantization: grid (ceil(K / 2048), rows),
// block 256, K a multiple of 32, out 16-byte aligned; the others: grid (ceil(K / 256), rows), block 256.
extern "C" __global__ void rbee_dequant_f32(int type, const uint8_t* w, long long row_bytes, int K, float* out);
extern "C" __global__ void rbee_dequant_bf16(int type, const uint8_t* w, long long row_bytes, int K, __nv_bfloat16* out);
extern "C" __global__ void rbee_f32_to_bf16(const float* x, long long n, __nv_bfloat16* y);
extern "C" __global__ void rbee_glu_f32(const float* gu, int F, int act, float* y);
extern "C" __global__ void rbee_add_bias(float* x, int ldx, const float* b, int K);
extern "C" __global__ void rbee_argmax_final(const float* part_val, const int* part_idx, int nparts, int ld, int* token,
                                             float* val_out, int* pos);
// tp.cu: the tensor-parallel exchanges of a decode step (TpArgs above).
extern "C" __global__ void rbee_tp_reduce(rbee::TpArgs);
extern "C" __global__ void rbee_tp_argmax(rbee::TpArgs);
