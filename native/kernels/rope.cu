// RoPE fused with the KV-cache write (and Gemma 3's per-head q/k RMS norm): one block per head
// and batch row, one thread per pair of dimensions. See RopeArgs in args.cuh.
#include "args.cuh"
#include "common.cuh"

using namespace rbee;

extern "C" __global__ void __launch_bounds__(128) rbee_rope_kv(RopeArgs a) {
  __shared__ float red[4];
  pdl_enter();
  const int r = blockIdx.y, head = blockIdx.x, i = threadIdx.x;
  const int hd = a.hd, half_rot = a.n_rot / 2;
  const int p = a.pos[r], slot = a.slot[r];
  const bool is_q = head < a.n_head, is_k = !is_q && head < a.n_head + a.n_kv;
  const int g = is_q ? head : is_k ? head - a.n_head : head - a.n_head - a.n_kv;
  const float* src = is_q ? a.q + (size_t)r * a.ldq + (size_t)g * hd
                   : is_k ? a.k + (size_t)r * a.ldk + (size_t)g * hd
                          : a.v + (size_t)r * a.ldv + (size_t)g * hd;
  // This thread's two dims: a rotated pair, or two of the pass-through tail.
  int e0, e1;
  if (i < half_rot) {
    e0 = a.neox ? i : 2 * i;
    e1 = a.neox ? i + half_rot : 2 * i + 1;
  } else {
    e0 = a.n_rot + 2 * (i - half_rot);
    e1 = e0 + 1;
  }
  float x0 = src[e0], x1 = src[e1];
  if (!is_q && !is_k) {
    if (p < a.cap) {
      half* dst = a.v_cache + (size_t)slot * a.slot_stride + ((size_t)g * a.cap + p) * hd;
      dst[e0] = __float2half_rn(x0);
      dst[e1] = __float2half_rn(x1);
    }
    return;
  }
  const float* nw = is_q ? a.q_norm : a.k_norm;
  if (nw) {  // uniform over the block
    float ss = warp_sum(fmaf(x1, x1, x0 * x0));
    const int lane = i & 31, warp = i >> 5, nwarps = (blockDim.x + 31) / 32;
    if (lane == 0) red[warp] = ss;
    __syncthreads();
    ss = 0.0f;
    for (int w = 0; w < nwarps; ++w) ss += red[w];
    const float scale = 1.0f / sqrtf(ss / (float)hd + a.eps);
    x0 = (x0 * scale) * nw[e0];
    x1 = (x1 * scale) * nw[e1];
  }
  if (i < half_rot) {
    float theta = (float)p * a.inv_freq[i];
    if (a.freq_factors) theta = theta / a.freq_factors[i];
    theta = a.freq_scale * theta;
    float s, c;
    sincosf(theta, &s, &c);
    const float y0 = x0 * c - x1 * s;
    const float y1 = x0 * s + x1 * c;
    x0 = y0;
    x1 = y1;
  }
  if (is_q) {
    float* dst = a.q_out + (size_t)r * a.ldqo + (size_t)g * hd;
    dst[e0] = x0;
    dst[e1] = x1;
  } else if (p < a.cap) {
    half* dst = a.k_cache + (size_t)slot * a.slot_stride + ((size_t)g * a.cap + p) * hd;
    dst[e0] = __float2half_rn(x0);
    dst[e1] = __float2half_rn(x1);
  }
}
