// The prompt (prefill) on the graph path: the layer's matrix products of a whole chunk of prompt
// tokens go to cuBLAS GEMMs, so these kernels only reshape around them: quantized weight rows
// dequantized (the same block decoding as the embedding lookup) to f32 for TF32 GEMMs or to bf16
// for bf16 GEMMs, the activations rounded to bf16 for the latter, and the gated activation of
// gate and up. (f16 operands overflowed: the synthetic 8B model's FFN activations pass 65504,
// and nothing bounds a real model's; TF32 and bf16 keep f32's range.) The rest of a prefill
// chunk (norms, RoPE with the KV-cache write, attention, the head) is the decode step's own
// kernels over T rows.
//
// Numerics: a decode step multiplies q8_1 activations with the weights' integers (llama.cpp's
// MMVQ); a prefill chunk multiplies TF32-rounded (10-bit mantissas) or bf16-rounded (7-bit)
// activations and weights, with f32 accumulation. The two agree to that rounding, not bit for bit.
#include <cuda_bf16.h>

#include "args.cuh"
#include "common.cuh"
#include "quants.cuh"

using namespace rbee;

__device__ __forceinline__ void store8(const float (&v)[8], float* out) {
  reinterpret_cast<float4*>(out)[0] = make_float4(v[0], v[1], v[2], v[3]);
  reinterpret_cast<float4*>(out)[1] = make_float4(v[4], v[5], v[6], v[7]);
}

__device__ __forceinline__ unsigned bf16_pair(float lo, float hi) {
  return (unsigned)__bfloat16_as_ushort(__float2bfloat16_rn(lo)) | ((unsigned)__bfloat16_as_ushort(__float2bfloat16_rn(hi)) << 16);
}

__device__ __forceinline__ void store8(const float (&v)[8], __nv_bfloat16* out) {
  *reinterpret_cast<uint4*>(out) = make_uint4(bf16_pair(v[0], v[1]), bf16_pair(v[2], v[3]), bf16_pair(v[4], v[5]), bf16_pair(v[6], v[7]));
}

template <class T, class Out>
__device__ __forceinline__ void dequant_row8(const uint8_t* row, int e0, Out* out) {
  float v[8];
  values8<T>(row + (size_t)(e0 / T::QK) * T::BYTES, e0 % T::QK, v);
  store8(v, out);
}

// One thread per eight values of a row (two float4 or one 16-byte bf16 store): the per-element
// version of this kernel decoded each value's scales again and ran at about a third of the
// memory bandwidth, and every weight of the model goes through it once a chunk.
template <class Out>
__device__ __forceinline__ void dequant_rows(int type, const uint8_t* w, long long row_bytes, int K, Out* out) {
  const int e0 = 8 * (blockIdx.x * blockDim.x + threadIdx.x), r = blockIdx.y;
  if (e0 >= K) return;
  const uint8_t* row = w + (size_t)r * row_bytes;
  Out* o = out + (size_t)r * K + e0;
  switch (type) {
    case Q4_0: dequant_row8<TQ4_0>(row, e0, o); break;
    case Q5_0: dequant_row8<TQ5_0>(row, e0, o); break;
    case Q8_0: dequant_row8<TQ8_0>(row, e0, o); break;
    case Q4_K: dequant_row8<TQ4_K>(row, e0, o); break;
    case Q5_K: dequant_row8<TQ5_K>(row, e0, o); break;
    case Q6_K: dequant_row8<TQ6_K>(row, e0, o); break;
    default: {
      const float nan8[8] = {NAN, NAN, NAN, NAN, NAN, NAN, NAN, NAN};
      store8(nan8, o);
    }
  }
}

// out[r][e] = dequant(w row r)[e], bit-identical to the blocks' values (quants.cuh's value()).
// K a multiple of 32. grid: (ceil(K / 2048), rows); block: 256.
extern "C" __global__ void __launch_bounds__(256)
    rbee_dequant_f32(int type, const uint8_t* w, long long row_bytes, int K, float* out) {
  dequant_rows(type, w, row_bytes, K, out);
}

// The same values rounded to bf16 (to nearest even), for the bf16 GEMM prefill.
extern "C" __global__ void __launch_bounds__(256)
    rbee_dequant_bf16(int type, const uint8_t* w, long long row_bytes, int K, __nv_bfloat16* out) {
  dequant_rows(type, w, row_bytes, K, out);
}

// y[i] = bf16(x[i]) for i < n: the bf16 GEMMs' activations. grid: ceil(n / 256); block: 256.
extern "C" __global__ void __launch_bounds__(256) rbee_f32_to_bf16(const float* x, long long n, __nv_bfloat16* y) {
  const long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
  if (i < n) y[i] = __float2bfloat16_rn(x[i]);
}

// y[r][e] = act(g[r][e]) * u[r][e] (0: SiLU, 1: tanh GELU; mmvq.cu's glu_act).
// g and u are the two halves of one [rows][2F] GEMM output. grid: (ceil(F / 256), rows); block: 256.
extern "C" __global__ void __launch_bounds__(256) rbee_glu_f32(const float* gu, int F, int act, float* y) {
  const int e = blockIdx.x * blockDim.x + threadIdx.x, r = blockIdx.y;
  if (e >= F) return;
  const float g = gu[(size_t)r * 2 * F + e], u = gu[(size_t)r * 2 * F + F + e];
  float v;
  if (act == 1) {
    const float inner = 0.7978845608028654f * g * (1.0f + 0.044715f * g * g);
    v = (0.5f * g * (1.0f + tanhf(inner))) * u;
  } else {
    v = (g / (1.0f + expf(-g))) * u;
  }
  y[(size_t)r * F + e] = v;
}

// x[r][e] += b[e] (the Q/K/V biases of Qwen-style models). grid: (ceil(K / 256), rows); block: 256.
extern "C" __global__ void __launch_bounds__(256) rbee_add_bias(float* x, int ldx, const float* b, int K) {
  const int e = blockIdx.x * blockDim.x + threadIdx.x, r = blockIdx.y;
  if (e < K) x[(size_t)r * ldx + e] += b[e];
}
