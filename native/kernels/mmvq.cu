// Quantized matrix x vector products for decode: weights in ggml blocks (Q4_0, Q5_0, Q8_0, Q4_K,
// Q5_K, Q6_K), activations in q8_1 planes, batch 1..8 (the NC columns share every weight load).
//
// rbee_mmvq_<type>_<nc>: out[c][row] = sum_k W[row][k] x[c][k] (+ res[c][row]), for up to three
//   row segments (fused QKV: three weight matrices of one type, three outputs; the rows need not be
//   adjacent in memory). Optional final-logit softcap and a per-block greedy argmax (the output
//   head). Block: 128 threads = 4 warps; `warps_per_row` (1, 2 or 4) warps share a row, so a
//   block covers 4 / warps_per_row rows per step and loops over the grid. Lane l of a row's
//   warps takes tasks l, l + 32*W, ... and accumulates each column in f32; the warps' sums are
//   combined by the xor butterfly and then in warp order. Every column's arithmetic is the same
//   whatever NC is: results are batch-invariant bit for bit.
// rbee_mmvq_glu_<type>_<nc>: gate and up rows together, h = act(gate) * up (SiLU or tanh GELU),
//   quantized straight to q8_1 planes for the down projection. Block: 256 threads, 32 features
//   (one q8_1 block per column) per step; warp w computes features w, w+8, w+16, w+24.
// rbee_mmvq_isums_<type>: the exact integer sum of every (row, unit, column), for tests.
#include "args.cuh"
#include "quants.cuh"

namespace rbee {

constexpr int MMVQ_THREADS = 128, MMVQ_WARPS = MMVQ_THREADS / WARP;
constexpr int GLU_THREADS = 256, GLU_WARPS = GLU_THREADS / WARP;


// The activations a task reads: NC columns of q8_1 planes.
struct XPlanes {
  const int8_t* q;
  const half2* ds;
  int ldq, ldds;
};

template <class T, int NC>
__device__ __forceinline__ void dot_task(const uint8_t* wblk, int b, int t, const XPlanes& a, float (&acc)[NC]) {
  typename T::W w;
  T::load(wblk, t, w);
#pragma unroll
  for (int c = 0; c < NC; ++c) {
    int x[T::UPT][8];
    float2 ds[T::UPT];
#pragma unroll
    for (int k = 0; k < T::UPT; ++k) {
      const int gu = b * (T::QK / QK8_1) + T::unit(t, k);
      load_x(a.q + (size_t)c * a.ldq + gu * QK8_1, x[k]);
      ds[k] = __half22float2(__ldg(a.ds + (size_t)c * a.ldds + gu));
    }
    int s[T::UPT];
    T::isums(w, x, s);
    acc[c] += T::combine(w, s, ds);
  }
}

template <class T, int NC>
__device__ __forceinline__ void mmvq_body(const MmvqArgs& a) {
  __shared__ float red[NC][MMVQ_WARPS];
  __shared__ float best_v[NC][MMVQ_WARPS];
  __shared__ int best_i[NC][MMVQ_WARPS];
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int W = a.warps_per_row, R = MMVQ_WARPS / W, slot = warp / W, ww = warp % W;
  const int rows0 = a.seg[0].rows, rows1 = a.nseg > 1 ? a.seg[1].rows : 0, rows2 = a.nseg > 2 ? a.seg[2].rows : 0;
  const int total = rows0 + rows1 + rows2;
  const int ntasks = a.K / T::QK * T::TASKS;
  float bv[NC];
  int bi[NC];
#pragma unroll
  for (int c = 0; c < NC; ++c) {
    bv[c] = -INFINITY;
    bi[c] = -1;
  }
  for (int row0 = blockIdx.x * R; row0 < total; row0 += gridDim.x * R) {
    const int row = row0 + slot;
    // The segment by selects, not by indexing: the arguments stay in the parameter bank.
    const int s = row < rows0 ? 0 : row < rows0 + rows1 ? 1 : 2;
    const int lr = s == 0 ? row : s == 1 ? row - rows0 : row - rows0 - rows1;
    const uint8_t* wseg = s == 0 ? a.seg[0].w : s == 1 ? a.seg[1].w : a.seg[2].w;
    float* out = s == 0 ? a.seg[0].out : s == 1 ? a.seg[1].out : a.seg[2].out;
    const float* res = s == 0 ? a.seg[0].res : s == 1 ? a.seg[1].res : a.seg[2].res;
    const int ldo = s == 0 ? a.seg[0].ldo : s == 1 ? a.seg[1].ldo : a.seg[2].ldo;
    const int ldr = s == 0 ? a.seg[0].ldr : s == 1 ? a.seg[1].ldr : a.seg[2].ldr;
    float acc[NC];
#pragma unroll
    for (int c = 0; c < NC; ++c) acc[c] = 0.0f;
    if (row < total) {
      const uint8_t* wrow = wseg + (size_t)lr * a.w_stride;
      const XPlanes x{a.xq, a.xds, a.ldxq, a.ldxds};
      for (int task = ww * WARP + lane; task < ntasks; task += W * WARP) {
        const int b = task / T::TASKS, t = task % T::TASKS;
        dot_task<T, NC>(wrow + (size_t)b * T::BYTES, b, t, x, acc);
      }
    }
#pragma unroll
    for (int c = 0; c < NC; ++c) acc[c] = warp_sum(acc[c]);
    if (W > 1) {
      if (lane == 0) {
#pragma unroll
        for (int c = 0; c < NC; ++c) red[c][warp] = acc[c];
      }
      __syncthreads();
      if (ww == 0) {
#pragma unroll
        for (int c = 0; c < NC; ++c) {
          float s = red[c][warp];
          for (int j = 1; j < W; ++j) s += red[c][warp + j];
          acc[c] = s;
        }
      }
      __syncthreads();
    }
    if (ww == 0 && lane == 0 && row < total) {
#pragma unroll
      for (int c = 0; c < NC; ++c) {
        float v = acc[c];
        if (a.softcap > 0.0f) v = tanhf(v / a.softcap) * a.softcap;
        if (res) v += res[(size_t)c * ldr + lr];
        out[(size_t)c * ldo + lr] = v;
        if (v > bv[c]) {
          bv[c] = v;
          bi[c] = row;
        }
      }
    }
  }
  if (a.argmax_val) {
    if (ww == 0 && lane == 0) {
#pragma unroll
      for (int c = 0; c < NC; ++c) {
        best_v[c][slot] = bv[c];
        best_i[c][slot] = bi[c];
      }
    }
    __syncthreads();
    if (threadIdx.x == 0) {
#pragma unroll
      for (int c = 0; c < NC; ++c) {
        float v = best_v[c][0];
        int i = best_i[c][0];
        for (int s = 1; s < R; ++s) {
          const float vs = best_v[c][s];
          const int is = best_i[c][s];
          if (is >= 0 && (i < 0 || vs > v || (vs == v && is < i))) {
            v = vs;
            i = is;
          }
        }
        a.argmax_val[(size_t)c * a.ld_argmax + blockIdx.x] = v;
        a.argmax_idx[(size_t)c * a.ld_argmax + blockIdx.x] = i;
      }
    }
  }
}

template <class T, int NC>
__device__ __forceinline__ void glu_body(const GluArgs& a) {
  __shared__ float h[NC][QK8_1];
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int ntasks = a.K / T::QK * T::TASKS;
  const XPlanes xa{a.xq, a.xds, a.ldxq, a.ldxds};
  for (int fb = blockIdx.x; fb < a.F / QK8_1; fb += gridDim.x) {
    for (int j = 0; j < QK8_1 / GLU_WARPS; ++j) {
      const int fi = warp + GLU_WARPS * j, f = fb * QK8_1 + fi;
      float g[NC], u[NC];
#pragma unroll
      for (int c = 0; c < NC; ++c) g[c] = u[c] = 0.0f;
      const uint8_t* wg = a.w_gate + (size_t)f * a.w_stride;
      const uint8_t* wu = a.w_up + (size_t)f * a.w_stride;
      for (int task = lane; task < ntasks; task += WARP) {
        const int b = task / T::TASKS, t = task % T::TASKS;
        dot_task<T, NC>(wg + (size_t)b * T::BYTES, b, t, xa, g);
        dot_task<T, NC>(wu + (size_t)b * T::BYTES, b, t, xa, u);
      }
#pragma unroll
      for (int c = 0; c < NC; ++c) {
        const float gs = warp_sum(g[c]), us = warp_sum(u[c]);
        if (lane == 0) h[c][fi] = glu_act(gs, us, a.act);
      }
    }
    __syncthreads();
    if (warp < NC) {
      const float v = h[warp][lane];
      const int f = fb * QK8_1 + lane;
      if (a.y) a.y[(size_t)warp * a.ldy + f] = v;
      quantize_lane_q8_1(v, a.yq + (size_t)warp * a.ldyq + fb * QK8_1, a.yds + (size_t)warp * a.ldyds + fb);
    }
    __syncthreads();
  }
}

// grid: rows; block: 32. out[(c * rows + row) * (K / 32) + unit] = the unit's exact integer sum.
template <class T>
__device__ __forceinline__ void isums_body(const uint8_t* w, long long w_stride, int rows, int K, const int8_t* xq, int ldxq,
                                           int ncols, int* out) {
  const int row = blockIdx.x;
  if (row >= rows) return;
  const int ntasks = K / T::QK * T::TASKS, units = K / QK8_1;
  for (int task = threadIdx.x; task < ntasks; task += WARP) {
    const int b = task / T::TASKS, t = task % T::TASKS;
    typename T::W wv;
    T::load(w + (size_t)row * w_stride + (size_t)b * T::BYTES, t, wv);
    for (int c = 0; c < ncols; ++c) {
      int x[T::UPT][8];
      for (int k = 0; k < T::UPT; ++k) load_x(xq + (size_t)c * ldxq + (b * (T::QK / QK8_1) + T::unit(t, k)) * QK8_1, x[k]);
      int s[T::UPT];
      T::isums(wv, x, s);
      for (int k = 0; k < T::UPT; ++k) out[((size_t)c * rows + row) * units + b * (T::QK / QK8_1) + T::unit(t, k)] = s[k];
    }
  }
}

}  // namespace rbee

using namespace rbee;

#define RBEE_MMVQ_NC(name, T, NC)                                                                        \
  extern "C" __global__ void __launch_bounds__(MMVQ_THREADS) rbee_mmvq_##name##_##NC(MmvqArgs a) {       \
    pdl_enter();                                                                                         \
    mmvq_body<T, NC>(a);                                                                                 \
  }                                                                                                      \
  extern "C" __global__ void __launch_bounds__(GLU_THREADS, (NC) <= 4 ? 2 : 1) rbee_mmvq_glu_##name##_##NC(GluArgs a) {     \
    pdl_enter();                                                                                         \
    glu_body<T, NC>(a);                                                                                  \
  }

#define RBEE_MMVQ_TYPE(name, T)                                                                          \
  RBEE_MMVQ_NC(name, T, 1)                                                                               \
  RBEE_MMVQ_NC(name, T, 2)                                                                               \
  RBEE_MMVQ_NC(name, T, 3)                                                                               \
  RBEE_MMVQ_NC(name, T, 4)                                                                               \
  RBEE_MMVQ_NC(name, T, 5)                                                                               \
  RBEE_MMVQ_NC(name, T, 6)                                                                               \
  RBEE_MMVQ_NC(name, T, 7)                                                                               \
  RBEE_MMVQ_NC(name, T, 8)                                                                               \
  extern "C" __global__ void __launch_bounds__(WARP)                                                     \
      rbee_mmvq_isums_##name(const uint8_t* w, long long w_stride, int rows, int K, const int8_t* xq, int ldxq, \
                             int ncols, int* out) {                                                      \
    isums_body<T>(w, w_stride, rows, K, xq, ldxq, ncols, out);                                           \
  }

RBEE_MMVQ_TYPE(q4_0, TQ4_0)
RBEE_MMVQ_TYPE(q5_0, TQ5_0)
RBEE_MMVQ_TYPE(q8_0, TQ8_0)
RBEE_MMVQ_TYPE(q4_k, TQ4_K)
RBEE_MMVQ_TYPE(q5_k, TQ5_K)
RBEE_MMVQ_TYPE(q6_k, TQ6_K)
