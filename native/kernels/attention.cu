// Flash-decoding attention over the f16 KV cache, for one new query per batch row (GQA: a block
// serves every query head of one KV head, so K and V are read once for the group).
//
// rbee_attn_split_<hd>: block (s, g, r) takes the s-th of nsplit equal parts of row r's visible
// keys, in tiles of 64 keys: scores (q.k * scale, f32 accumulation of f16 K) into shared memory,
// an online softmax per head (running max and sum), then P.V accumulated in f32. It writes the
// part's unnormalized output and {max, sum}. The split count is fixed when a graph is captured;
// the part boundaries come from the positions in device memory, so the same graph serves every
// context length up to the cache's capacity.
// rbee_attn_reduce_<hd>: merges the parts (in split order), divides by the sum, and writes f32
// and q8_1 planes for the o-projection.
#include "args.cuh"
#include "common.cuh"

namespace rbee {

constexpr int ATTN_THREADS = 128, ATTN_WARPS = 4, ATTN_TILE = 64, ATTN_MAX_GROUP = 8;

template <int HD>
__device__ __forceinline__ void attn_split(const AttnArgs& a) {
  constexpr int LPK = HD / 16;           // lanes per key in the score phase (16 dims each)
  constexpr int KPW = WARP / LPK;        // keys per warp per pass
  constexpr int PAIRS = HD / 2;          // PV phase: a thread per pair of dims ...
  constexpr int KS = ATTN_THREADS / PAIRS;  // ... and KS threads per pair, over the keys
  __shared__ __align__(16) float qs[ATTN_MAX_GROUP][HD];
  __shared__ float sc[ATTN_MAX_GROUP][ATTN_TILE];
  __shared__ float m_run[ATTN_MAX_GROUP], l_run[ATTN_MAX_GROUP], alpha[ATTN_MAX_GROUP];
  __shared__ float2 red[KS > 1 ? KS - 1 : 1][ATTN_MAX_GROUP][PAIRS];

  const int split = blockIdx.x, g = blockIdx.y, r = blockIdx.z;
  const int G = a.n_head / a.n_kv;
  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  const int pos = a.pos[r];
  const int len = pos + 1;
  const int first = a.window > 0 ? max(0, pos - a.window + 1) : 0;
  const int span = len - first;
  const int chunk = (span + a.nsplit - 1) / a.nsplit;
  const int begin = first + split * chunk, end = min(len, begin + chunk);

  const float* q = a.q + (size_t)r * a.ldq + (size_t)g * G * HD;
  for (int i = tid; i < G * HD; i += ATTN_THREADS) qs[i / HD][i % HD] = q[i];
  if (tid < G) {
    m_run[tid] = -INFINITY;
    l_run[tid] = 0.0f;
  }
  const size_t kv_base = (size_t)a.slot[r] * a.slot_stride + (size_t)g * a.cap * HD;
  const half* K = a.k_cache + kv_base;
  const half* V = a.v_cache + kv_base;

  const int pair = tid % PAIRS, ks = tid / PAIRS;
  float2 acc[ATTN_MAX_GROUP];
#pragma unroll
  for (int h = 0; h < ATTN_MAX_GROUP; ++h) acc[h] = make_float2(0.0f, 0.0f);
  __syncthreads();

  for (int t0 = begin; t0 < end; t0 += ATTN_TILE) {
    // Scores: lanes sub*16 .. sub*16+15 of key j.
    const int sub = lane % LPK;
    for (int jj0 = warp * KPW; jj0 < ATTN_TILE; jj0 += ATTN_WARPS * KPW) {
      const int jj = jj0 + lane / LPK, j = t0 + jj;
      float kf[16];
      if (j < end) {
        const uint4* kp = reinterpret_cast<const uint4*>(K + (size_t)j * HD + sub * 16);
        const uint4 k0 = __ldg(kp), k1 = __ldg(kp + 1);
        const half2* h0 = reinterpret_cast<const half2*>(&k0);
        const half2* h1 = reinterpret_cast<const half2*>(&k1);
#pragma unroll
        for (int i = 0; i < 4; ++i) {
          const float2 f0 = __half22float2(h0[i]), f1 = __half22float2(h1[i]);
          kf[2 * i] = f0.x;
          kf[2 * i + 1] = f0.y;
          kf[8 + 2 * i] = f1.x;
          kf[8 + 2 * i + 1] = f1.y;
        }
      } else {
#pragma unroll
        for (int i = 0; i < 16; ++i) kf[i] = 0.0f;
      }
#pragma unroll
      for (int h = 0; h < ATTN_MAX_GROUP; ++h) {
        if (h < G) {
          const float4* qv = reinterpret_cast<const float4*>(&qs[h][sub * 16]);
          float d = 0.0f;
#pragma unroll
          for (int i = 0; i < 4; ++i) {
            const float4 x = qv[i];
            d = fmaf(x.x, kf[4 * i], d);
            d = fmaf(x.y, kf[4 * i + 1], d);
            d = fmaf(x.z, kf[4 * i + 2], d);
            d = fmaf(x.w, kf[4 * i + 3], d);
          }
#pragma unroll
          for (int o = LPK / 2; o > 0; o >>= 1) d += __shfl_xor_sync(0xffffffffu, d, o);
          if (sub == 0) sc[h][jj] = j < end ? d * a.scale : -INFINITY;
        }
      }
    }
    __syncthreads();
    // Online softmax: warp w takes heads w, w + 4; two keys per lane.
    for (int h = warp; h < G; h += ATTN_WARPS) {
      const float s0 = sc[h][lane], s1 = sc[h][lane + 32];
      const float mt = warp_max(fmaxf(s0, s1));
      const float mo = m_run[h];
      const float mn = fmaxf(mo, mt);
      float p0 = 0.0f, p1 = 0.0f, al = 1.0f;
      if (mn != -INFINITY) {
        p0 = expf(s0 - mn);
        p1 = expf(s1 - mn);
        al = expf(mo - mn);
      }
      sc[h][lane] = p0;
      sc[h][lane + 32] = p1;
      const float ps = warp_sum(p0 + p1);
      __syncwarp();
      if (lane == 0) {
        l_run[h] = fmaf(l_run[h], al, ps);
        m_run[h] = mn;
        alpha[h] = al;
      }
    }
    __syncthreads();
    // P.V: thread (pair, ks) takes keys ks, ks + KS, ... of the tile.
#pragma unroll
    for (int h = 0; h < ATTN_MAX_GROUP; ++h) {
      if (h < G) {
        acc[h].x *= alpha[h];
        acc[h].y *= alpha[h];
      }
    }
    const int nt = min(ATTN_TILE, end - t0);
    for (int jj = ks; jj < nt; jj += KS) {
      const float2 v = __half22float2(*reinterpret_cast<const half2*>(V + (size_t)(t0 + jj) * HD + 2 * pair));
#pragma unroll
      for (int h = 0; h < ATTN_MAX_GROUP; ++h) {
        if (h < G) {
          const float p = sc[h][jj];
          acc[h].x = fmaf(p, v.x, acc[h].x);
          acc[h].y = fmaf(p, v.y, acc[h].y);
        }
      }
    }
    __syncthreads();
  }
  // Merge the KS key subsets (in order) and write the part.
  if (KS > 1) {
    if (ks > 0) {
#pragma unroll
      for (int h = 0; h < ATTN_MAX_GROUP; ++h)
        if (h < G) red[ks - 1][h][pair] = acc[h];
    }
    __syncthreads();
  }
  const size_t part = ((size_t)r * a.n_head + (size_t)g * G) * a.nsplit + split;  // head g*G, this split
  if (ks == 0) {
#pragma unroll
    for (int h = 0; h < ATTN_MAX_GROUP; ++h) {
      if (h < G) {
        float2 s = acc[h];
        for (int k = 1; k < KS; ++k) {
          s.x += red[k - 1][h][pair].x;
          s.y += red[k - 1][h][pair].y;
        }
        float* o = a.part_o + (part + (size_t)h * a.nsplit) * HD;
        reinterpret_cast<float2*>(o)[pair] = s;
      }
    }
  }
  if (tid < G) a.part_ml[part + (size_t)tid * a.nsplit] = make_float2(m_run[tid], l_run[tid]);
}

template <int HD>
__device__ __forceinline__ void attn_reduce(const AttnReduceArgs& a) {
  const int h = blockIdx.x, r = blockIdx.y, d = threadIdx.x;
  const size_t base = ((size_t)r * a.n_head + h) * a.nsplit;
  float m = -INFINITY;
  for (int s = 0; s < a.nsplit; ++s) {
    const float2 ml = a.part_ml[base + s];
    if (ml.y > 0.0f) m = fmaxf(m, ml.x);
  }
  float l = 0.0f, o = 0.0f;
  for (int s = 0; s < a.nsplit; ++s) {
    const float2 ml = a.part_ml[base + s];
    if (ml.y > 0.0f) {
      const float w = expf(ml.x - m);
      l = fmaf(ml.y, w, l);
      o = fmaf(a.part_o[(base + s) * HD + d], w, o);
    }
  }
  const float v = l > 0.0f ? o / l : 0.0f;
  if (a.out) a.out[(size_t)r * a.ldo + (size_t)h * HD + d] = v;
  if (a.yq) quantize_lane_q8_1(v, a.yq + (size_t)r * a.ldyq + (size_t)h * HD + (d & ~31), a.yds + (size_t)r * a.ldyds + (h * HD + d) / 32);
}

}  // namespace rbee

using namespace rbee;

extern "C" __global__ void __launch_bounds__(ATTN_THREADS) rbee_attn_split_64(AttnArgs a) { pdl_enter(); attn_split<64>(a); }
extern "C" __global__ void __launch_bounds__(ATTN_THREADS) rbee_attn_split_128(AttnArgs a) { pdl_enter(); attn_split<128>(a); }
extern "C" __global__ void __launch_bounds__(ATTN_THREADS) rbee_attn_split_256(AttnArgs a) { pdl_enter(); attn_split<256>(a); }
extern "C" __global__ void __launch_bounds__(64) rbee_attn_reduce_64(AttnReduceArgs a) { pdl_enter(); attn_reduce<64>(a); }
extern "C" __global__ void __launch_bounds__(128) rbee_attn_reduce_128(AttnReduceArgs a) { pdl_enter(); attn_reduce<128>(a); }
extern "C" __global__ void __launch_bounds__(256) rbee_attn_reduce_256(AttnReduceArgs a) { pdl_enter(); attn_reduce<256>(a); }
