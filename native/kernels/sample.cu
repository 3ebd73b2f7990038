// The token embedding lookup (dequantized rows of the table) and the greedy pick from the output
// head's per-block partials: the first and last kernels of a decode step, so that per token the
// host only writes token ids and positions and reads back one id per row.
#include "args.cuh"
#include "quants.cuh"

using namespace rbee;

template <class T>
__device__ __forceinline__ float table_value(const uint8_t* row, int e) {
  return T::value(row + (size_t)(e / T::QK) * T::BYTES, e % T::QK);
}

extern "C" __global__ void __launch_bounds__(256) rbee_embed_rows(int type, const uint8_t* table, long long row_bytes,
                                                                  const int* tokens, int K, float scale, float* out, int ldo) {
  pdl_enter();
  const int e = blockIdx.x * blockDim.x + threadIdx.x, r = blockIdx.y;
  if (e >= K) return;
  const uint8_t* row = table + (size_t)tokens[r] * row_bytes;
  float v;
  switch (type) {
    case Q4_0: v = table_value<TQ4_0>(row, e); break;
    case Q5_0: v = table_value<TQ5_0>(row, e); break;
    case Q8_0: v = table_value<TQ8_0>(row, e); break;
    case Q4_K: v = table_value<TQ4_K>(row, e); break;
    case Q5_K: v = table_value<TQ5_K>(row, e); break;
    case Q6_K: v = table_value<TQ6_K>(row, e); break;
    default: v = __int_as_float(0x7fc00000); break;  // NaN: a type without a kernel is refused on the host
  }
  out[(size_t)r * ldo + e] = v * scale;
}

// (v, i) beats (bv, bi): larger value, or equal value and lower id; id < 0 is empty.
__device__ __forceinline__ bool better(float v, int i, float bv, int bi) {
  return i >= 0 && (bi < 0 || v > bv || (v == bv && i < bi));
}

extern "C" __global__ void __launch_bounds__(256) rbee_argmax_final(const float* part_val, const int* part_idx, int nparts, int ld,
                                                                    int* token, float* val_out, int* pos) {
  __shared__ float sv[8];
  __shared__ int si[8];
  pdl_enter();
  const int r = blockIdx.x, lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  float bv = -INFINITY;
  int bi = -1;
  for (int p = threadIdx.x; p < nparts; p += blockDim.x) {
    const float v = part_val[(size_t)r * ld + p];
    const int i = part_idx[(size_t)r * ld + p];
    if (better(v, i, bv, bi)) {
      bv = v;
      bi = i;
    }
  }
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) {
    const float v = __shfl_xor_sync(0xffffffffu, bv, o);
    const int i = __shfl_xor_sync(0xffffffffu, bi, o);
    if (better(v, i, bv, bi)) {
      bv = v;
      bi = i;
    }
  }
  if (lane == 0) {
    sv[warp] = bv;
    si[warp] = bi;
  }
  __syncthreads();
  if (threadIdx.x == 0) {
    for (int w = 1; w < (int)(blockDim.x + 31) / 32; ++w)
      if (better(sv[w], si[w], bv, bi)) {
        bv = sv[w];
        bi = si[w];
      }
    token[r] = bi;
    if (val_out) val_out[r] = bv;
    if (pos) pos[r] += 1;
  }
}
