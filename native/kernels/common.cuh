// Shared pieces of rbee's decode kernels: the weight block layouts (ggml's, byte for byte, as a
// GGUF stores them), the 8-bit activation format, warp reductions and unaligned loads.
//
// Build contract (every .cu here): nvcc -O3 --fmad=false, sm_80 or newer (dp4a, half2 atomics
// are not needed). --fmad=false because the float arithmetic must not depend on what the compiler
// chooses to fuse: each kernel is instantiated once per batch width, and a column's result has to
// be bit-identical whether it ran alone or in a batch of 8 (a stream's greedy text must not depend
// on who it shares the GPU with). Where a fused multiply-add is wanted it is written (fmaf).
//
// Activations ("q8_1 planes"): ggml's block_q8_1 content, 32 int8 values q, a scale d = amax/127
// and s = the float sum of the 32 unquantized values (both stored as half), split into two planes
// so that a unit's 32 values are two 16-byte loads: qs[row][k] (int8, row stride a multiple of 16
// bytes) and ds[row][k/32] (half2 {d, s}). No globals: every kernel takes its pointers, strides
// and row ranges, so a step can be split over GPUs by rows or columns.
#pragma once
#include <cuda_fp16.h>
#include <stdint.h>

namespace rbee {

constexpr int WARP = 32;
constexpr int QK8_1 = 32;

// Programmatic dependent launch (sm_90 and newer). The decode graph launches each kernel while the
// one before it still runs (unless RBEE_CANDLE_PDL=off), so its blocks are already resident when that one
// ends and the ~1 us gap between two kernels of a graph hides under the previous one's tail. Every
// kernel therefore starts here: wait until the previous grid has completed and its writes are
// visible (which it did only after its own predecessor, so every earlier kernel is done too), then
// let the next grid launch. Launched without the attribute (PDL off, GPUs before sm_90) the wait
// returns at once. Nothing is read or written before it.
__device__ __forceinline__ void pdl_enter() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.wait;" ::: "memory");
  asm volatile("griddepcontrol.launch_dependents;" ::: "memory");
#endif
}
constexpr int QK_K = 256;

// ggml_type ids (the GGUF tensor type), the ones with kernels here.
enum QType : int { Q4_0 = 2, Q5_0 = 6, Q8_0 = 8, Q4_K = 12, Q5_K = 13, Q6_K = 14 };

// Block sizes in bytes, and values per block.
//   Q4_0  18: half d; u8 qs[16]                       (q = nibble - 8; low nibbles are values 0..15)
//   Q5_0  22: half d; u8 qh[4]; u8 qs[16]             (q = nibble | bit e of qh << 4, minus 16)
//   Q8_0  34: half d; i8 qs[32]
//   Q4_K 144: half d, dmin; u8 scales[12]; u8 qs[128] (8 sub-blocks of 32: 6-bit scale and min each)
//   Q5_K 176: half d, dmin; u8 scales[12]; u8 qh[32]; u8 qs[128]
//   Q6_K 210: u8 ql[128]; u8 qh[64]; i8 scales[16]; half d   (q = 6 bits - 32, a scale per 16)
__host__ __device__ constexpr int block_bytes(int t) {
  return t == Q4_0 ? 18 : t == Q5_0 ? 22 : t == Q8_0 ? 34 : t == Q4_K ? 144 : t == Q5_K ? 176 : t == Q6_K ? 210 : 0;
}
__host__ __device__ constexpr int block_values(int t) { return (t == Q4_K || t == Q5_K || t == Q6_K) ? QK_K : 32; }

__device__ __forceinline__ float warp_sum(float v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}
__device__ __forceinline__ float warp_max(float v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}

// The gated linear unit's activation times up: SiLU (act 0) or tanh GELU (act 1). One definition
// for the fused gate+up kernels and the MMQ path's epilogue, so both give the same bits.
__device__ __forceinline__ float glu_act(float g, float u, int act) {
  if (act == 1) {
    const float inner = 0.7978845608028654f * g * (1.0f + 0.044715f * g * g);
    return (0.5f * g * (1.0f + tanhf(inner))) * u;
  }
  return (g / (1.0f + expf(-g))) * u;
}

// One 32-value block of one lane's value each -> q8_1 (ggml's quantize_q8_1: d = amax/127,
// q = roundf(x/d), s = the butterfly sum of x). Every lane gets its q; lane 0 writes d and s.
__device__ __forceinline__ void quantize_lane_q8_1(float v, int8_t* qs, half2* ds) {
  const float amax = warp_max(fabsf(v));
  const float sum = warp_sum(v);
  const float d = amax / 127.0f;
  const int lane = threadIdx.x & 31;
  qs[lane] = amax == 0.0f ? 0 : (int8_t)roundf(v / d);
  if (lane == 0) *ds = __floats2half2_rn(d, sum);
}

// N consecutive 32-bit words from a 2-byte-aligned address (ggml's Q4_0/Q5_0/Q8_0/Q6_K blocks are
// only 2-byte aligned): aligned word loads and a funnel shift. Every word read holds at least one
// byte of the N*4 asked for (the extra word is read only when the address is 2 mod 4), so a read
// never reaches a 4-byte word beyond the data's last byte.
template <int N>
__device__ __forceinline__ void load_words_a2(const uint8_t* p, int (&out)[N]) {
  const uintptr_t a = reinterpret_cast<uintptr_t>(p);
  const int* w = reinterpret_cast<const int*>(a & ~uintptr_t(3));
  const bool odd = (a & 2) != 0;
  const int sh = odd ? 16 : 0;
  int prev = __ldcs(w);
#pragma unroll
  for (int i = 0; i < N; ++i) {
    int next = 0;
    if (i + 1 < N || odd) next = __ldcs(w + i + 1);
    out[i] = (int)__funnelshift_r((unsigned)prev, (unsigned)next, sh);
    prev = next;
  }
}

__device__ __forceinline__ float half_at(const uint8_t* p) {
  return __half2float(*reinterpret_cast<const half*>(p));
}

}  // namespace rbee
