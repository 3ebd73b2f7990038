// RMSNorm fused with quantizing its output to q8_1 planes (the input of the next quantized
// matrix-vector product), and a plain q8_1 quantizer.
//
// The reduction order is fixed and documented so that a CPU reference can replay it bit for bit:
// thread t of 1024 sums x[i]^2 for i = t, t+1024, ... with fmaf in increasing i; each warp
// reduces its 32 partials by the xor butterfly (16, 8, 4, 2, 1); then the 32 warp sums go through
// the same butterfly. (1024 threads: the q8_1 blocks are quantized a warp each, so 32 warps keep
// that tail short; with 8 a 4096-wide row took 5.7 us on an H100.) scale = 1 / sqrtf(sum / K + eps) (IEEE division and
// square root: no rsqrtf), y = (x * scale) * w.
#include "args.cuh"
#include "common.cuh"

namespace rbee {

constexpr int NORM_THREADS = 1024;


__device__ __forceinline__ float block_sum(float v, float* red) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  v = warp_sum(v);
  if (lane == 0) red[warp] = v;
  __syncthreads();
  float t = lane < NORM_THREADS / WARP ? red[lane] : 0.0f;
  t = warp_sum(t);
  __syncthreads();
  return t;
}

__device__ __forceinline__ float norm_scale(const float* row, int K, float eps, float* red) {
  float acc = 0.0f;
  for (int i = threadIdx.x; i < K; i += NORM_THREADS) acc = fmaf(row[i], row[i], acc);
  const float ss = block_sum(acc, red);
  return 1.0f / sqrtf(ss / (float)K + eps);
}

}  // namespace rbee

using namespace rbee;

// grid: rows; block: 1024; dynamic shared memory: K floats.
extern "C" __global__ void __launch_bounds__(NORM_THREADS) rbee_rmsnorm_q8_1(NormArgs a) {
  extern __shared__ float row[];
  __shared__ float red[NORM_THREADS / WARP];
  pdl_enter();
  const int r = blockIdx.x;
  float* x = a.x + (size_t)r * a.ldx;
  if (a.pre) {
    const float* p = a.pre + (size_t)r * a.ldpre;
    const float sp = norm_scale(p, a.K, a.eps, red);
    for (int i = threadIdx.x; i < a.K; i += NORM_THREADS) {
      const float v = x[i] + (p[i] * sp) * a.w_pre[i];
      x[i] = v;
      row[i] = v;
    }
  } else {
    for (int i = threadIdx.x; i < a.K; i += NORM_THREADS) row[i] = x[i];
  }
  __syncthreads();
  const float scale = norm_scale(row, a.K, a.eps, red);
  for (int i = threadIdx.x; i < a.K; i += NORM_THREADS) {
    const float v = (row[i] * scale) * a.w[i];
    row[i] = v;
    if (a.y) a.y[(size_t)r * a.ldy + i] = v;
  }
  __syncthreads();
  // No q8_1 planes (a prefill chunk, whose products take the f32 `y`): uniform over the block.
  if (!a.yq) return;
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  for (int b = warp; b < a.K / QK8_1; b += NORM_THREADS / WARP) {
    quantize_lane_q8_1(row[b * QK8_1 + lane], a.yq + (size_t)r * a.ldyq + b * QK8_1, a.yds + (size_t)r * a.ldyds + b);
  }
}

// x [rows][ldx] f32 -> q8_1 planes. grid: (ceil(K/32/8), rows); block: 256 (a warp per block of 32).
extern "C" __global__ void __launch_bounds__(256)
    rbee_quantize_q8_1(const float* x, int ldx, int K, int8_t* yq, int ldyq, half2* yds, int ldyds) {
  pdl_enter();
  const int b = blockIdx.x * 8 + (threadIdx.x >> 5), r = blockIdx.y;
  if (b >= K / QK8_1) return;
  const float v = x[(size_t)r * ldx + b * QK8_1 + (threadIdx.x & 31)];
  quantize_lane_q8_1(v, yq + (size_t)r * ldyq + b * QK8_1, yds + (size_t)r * ldyds + b);
}
