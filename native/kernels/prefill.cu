// The prompt (prefill) on the graph path: the layer's matrix products of a whole chunk of prompt
// tokens go to cuBLAS as TF32 GEMMs on f32 operands, so these kernels only reshape around them:
// quantized weight rows dequantized to f32 (the same block decoding as the embedding lookup), and
// the gated activation of gate and up. (f16 operands overflowed: the synthetic 8B model's FFN
// activations pass 65504, and nothing bounds a real model's; TF32 keeps f32's range.) The rest of a prefill chunk (norms, RoPE with the
// KV-cache write, attention, the head) is the decode step's own kernels over T rows.
//
// Numerics: a decode step multiplies q8_1 activations with the weights' integers (llama.cpp's
// MMVQ); a prefill chunk multiplies TF32-rounded activations and weights (10-bit mantissas, f32
// accumulation). The two agree to that rounding, not bit for bit.
#include "args.cuh"
#include "common.cuh"
#include "quants.cuh"

using namespace rbee;

template <class T>
__device__ __forceinline__ float block_value(const uint8_t* row, int e) {
  return T::value(row + (size_t)(e / T::QK) * T::BYTES, e % T::QK);
}

// out[r][e] = dequant(w row r)[e]. grid: (ceil(K / 256), rows); block: 256.
extern "C" __global__ void __launch_bounds__(256)
    rbee_dequant_f32(int type, const uint8_t* w, long long row_bytes, int K, float* out) {
  const int e = blockIdx.x * blockDim.x + threadIdx.x, r = blockIdx.y;
  if (e >= K) return;
  const uint8_t* row = w + (size_t)r * row_bytes;
  float v;
  switch (type) {
    case Q4_0: v = block_value<TQ4_0>(row, e); break;
    case Q5_0: v = block_value<TQ5_0>(row, e); break;
    case Q8_0: v = block_value<TQ8_0>(row, e); break;
    case Q4_K: v = block_value<TQ4_K>(row, e); break;
    case Q5_K: v = block_value<TQ5_K>(row, e); break;
    case Q6_K: v = block_value<TQ6_K>(row, e); break;
    default: v = __int_as_float(0x7fc00000); break;
  }
  out[(size_t)r * K + e] = v;
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
