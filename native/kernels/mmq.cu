// Quantized matrix x matrix products for decode batches wider than the mat-vec kernels' 8
// columns (buckets 16 and 32): the integer dots on tensor cores (mma.sync m16n8k16, int8), each
// weight block read once for up to 32 columns, and every column's float result bit-identical to
// what rbee_mmvq_<type>_1 gives that column alone. That last part is the point: a stream's greedy
// text must not change when more streams join the batch.
//
// How the bits are kept. rbee_mmvq with W warps per row gives each of its 32*W lanes ("virtual
// lanes") the tasks v, v + 32W, ... of a row (for the K-quants, task = 4 * block + t, so lane
// v = 4 * (block mod 8W) + t); a lane accumulates combine(task) in f32 in task order, then each
// warp's lanes meet in the xor butterfly (16, 8, 4, 2, 1) and the warps add up in order. Here
// warp w of a block owns the blocks b = s, s + 8W, ... of the slices s = w, w + 8, ... (W of them),
// so it holds exactly the virtual lanes 4s + t of those slices for every row and column of its
// tile, and accumulates them in the same order. The integer unit sums are exact whichever way
// they are computed (tensor cores here, dp4a there), and `isums_from_halves` turns the half-unit
// sums into the integers `isums` gives; combine() is the same function. At the end the partials
// meet in shared memory and one thread per (row, column) replays the butterfly and the warp sum.
//
// rbee_mmq_<type>_w<W>_c<NC>(MmvqArgs): grid (row tiles, or fewer: blocks loop), ceil(ncols / NC));
//   block 256 (8 warps); 16 rows a tile; every segment's row count a multiple of 16. K-quants
//   (Q4_K, Q5_K, Q6_K) only; the 32-value types keep the mat-vec kernels. Same arguments and
//   epilogue as rbee_mmvq (segments, residual, softcap, per-block argmax partials), `ncols`
//   columns. W must be the warps_per_row that rbee_mmvq_<type>_1 would run with; NC is 16 or 32.
// rbee_glu_q8_1(g, u, ...): h = act(g) * up from the two products, quantized to q8_1 as the fused
//   gate+up kernel does (the MMQ path runs gate and up as two segments of one rbee_mmq launch
//   with W = 1, which is the fused kernel's order).
#include "args.cuh"
#include "quants.cuh"

namespace rbee {

constexpr int MMQ_THREADS = 256, MMQ_WARPS = MMQ_THREADS / WARP, MMQ_ROWS = 16;

// C = A (16 x 16, rows of weights) * B (16 x 8, columns of activations), int8 in, int32 out.
// Fragments (PTX ISA, m16n8k16 .s8): a0 = row g, k 4*tig..+3; a1 = row g + 8; b0 = k 4*tig..+3 of
// column g; c0, c1 = row g, columns 2*tig, 2*tig + 1; c2, c3 = row g + 8 (g = lane / 4, tig = lane % 4).
__device__ __forceinline__ void mma_s8(int (&c)[4], int a0, int a1, int b0) {
  c[0] = c[1] = c[2] = c[3] = 0;
  asm("mma.sync.aligned.m16n8k16.row.col.s32.s8.s8.s32 {%0, %1, %2, %3}, {%4, %5}, {%6}, {%0, %1, %2, %3};"
      : "+r"(c[0]), "+r"(c[1]), "+r"(c[2]), "+r"(c[3])
      : "r"(a0), "r"(a1), "r"(b0));
}

// Lane 0's value after warp_sum's butterfly over p[0], p[stride], ..., p[31 * stride].
__device__ __forceinline__ float butterfly_lane0(const float* p, int stride) {
  float q[16];
#pragma unroll
  for (int l = 0; l < 16; ++l) q[l] = p[l * stride] + p[(l + 16) * stride];
#pragma unroll
  for (int o = 8; o > 0; o >>= 1) {
#pragma unroll
    for (int l = 0; l < o; ++l) q[l] = q[l] + q[l + o];
  }
  return q[0];
}

template <class T, int W, int NC>
__device__ __forceinline__ void mmq_body(const MmvqArgs& a) {
  static_assert(T::QK == QK_K && T::TASKS == 4 && T::UPT == 2, "the MMQ kernels are for the K-quants");
  static_assert(NC % 8 == 0 && NC <= 32, "8-column tensor-core tiles, at most 4");
  constexpr int CT = NC / 8, SLICES = 8 * W, UNITS = QK_K / QK8_1;
  using Wt = typename T::W;
  constexpr int TILE_BYTES = MMQ_WARPS * MMQ_ROWS * T::TASKS * (int)sizeof(Wt);
  constexpr int RED_BYTES = 32 * W * MMQ_ROWS * 8 * (int)sizeof(float);
  static_assert(TILE_BYTES <= 46 * 1024 && RED_BYTES <= TILE_BYTES, "static shared memory");
  __shared__ __align__(16) unsigned char smem[TILE_BYTES];
  __shared__ float vals[MMQ_ROWS][8];

  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, g = lane >> 2, tig = lane & 3;
  Wt* tile = reinterpret_cast<Wt*>(smem) + warp * MMQ_ROWS * T::TASKS;
  float* red = reinterpret_cast<float*>(smem);
  const int rows0 = a.seg[0].rows, rows1 = a.nseg > 1 ? a.seg[1].rows : 0, rows2 = a.nseg > 2 ? a.seg[2].rows : 0;
  const int total = rows0 + rows1 + rows2;
  const int nblk = a.K / QK_K;
  const int c0 = blockIdx.y * NC;
  const int cend = min(a.ncols, c0 + NC);
  float bv[CT];
  int bi[CT];
#pragma unroll
  for (int ct = 0; ct < CT; ++ct) {
    bv[ct] = -INFINITY;
    bi[ct] = -1;
  }

  for (int row0 = blockIdx.x * MMQ_ROWS; row0 < total; row0 += gridDim.x * MMQ_ROWS) {
    // A tile never straddles segments (their row counts are multiples of 16).
    const int s = row0 < rows0 ? 0 : row0 < rows0 + rows1 ? 1 : 2;
    const int lr0 = s == 0 ? row0 : s == 1 ? row0 - rows0 : row0 - rows0 - rows1;
    const uint8_t* wseg = s == 0 ? a.seg[0].w : s == 1 ? a.seg[1].w : a.seg[2].w;
    float* out = s == 0 ? a.seg[0].out : s == 1 ? a.seg[1].out : a.seg[2].out;
    const float* res = s == 0 ? a.seg[0].res : s == 1 ? a.seg[1].res : a.seg[2].res;
    const int ldo = s == 0 ? a.seg[0].ldo : s == 1 ? a.seg[1].ldo : a.seg[2].ldo;
    const int ldr = s == 0 ? a.seg[0].ldr : s == 1 ? a.seg[1].ldr : a.seg[2].ldr;
    const uint8_t* wtile = wseg + (size_t)lr0 * a.w_stride;

    // part[j][t][ct][e]: virtual lane 4 * (warp + 8j) + t of entry e of column tile ct.
    float part[W][4][CT][4];
#pragma unroll
    for (int j = 0; j < W; ++j)
#pragma unroll
      for (int t = 0; t < 4; ++t)
#pragma unroll
        for (int ct = 0; ct < CT; ++ct)
#pragma unroll
          for (int e = 0; e < 4; ++e) part[j][t][ct][e] = 0.0f;

#pragma unroll
    for (int j = 0; j < W; ++j) {
      for (int b = warp + MMQ_WARPS * j; b < nblk; b += SLICES) {
        // The 16 rows' block b, one (row, task) per lane and step: T::load as rbee_mmvq does.
#pragma unroll
        for (int p = lane; p < MMQ_ROWS * T::TASKS; p += WARP) {
          const int r = p / T::TASKS, t = p % T::TASKS;
          T::load(wtile + (size_t)r * a.w_stride + (size_t)b * T::BYTES, t, tile[p]);
        }
        __syncwarp();
#pragma unroll
        for (int t = 0; t < 4; ++t) {
          const Wt& w0 = tile[g * T::TASKS + t];
          const Wt& w1 = tile[(g + 8) * T::TASKS + t];
          int af[2][2][2];
#pragma unroll
          for (int k = 0; k < 2; ++k)
#pragma unroll
            for (int h = 0; h < 2; ++h) {
              af[k][h][0] = w0.v[k][4 * h + tig];
              af[k][h][1] = w1.v[k][4 * h + tig];
            }
#pragma unroll
          for (int ct = 0; ct < CT; ++ct) {
            const int col = c0 + 8 * ct + g;
            int hs[2][2][4];
#pragma unroll
            for (int k = 0; k < 2; ++k) {
              const int unit = b * UNITS + T::unit(t, k);
#pragma unroll
              for (int h = 0; h < 2; ++h) {
                const int bw =
                    col < cend ? __ldg(reinterpret_cast<const int*>(a.xq + (size_t)col * a.ldxq + unit * QK8_1 + 16 * h + 4 * tig)) : 0;
                mma_s8(hs[k][h], af[k][h][0], af[k][h][1], bw);
              }
            }
            // This lane's two columns' {d, s} for the task's two units (rows g and g + 8 share them).
            float2 ds[2][2];
#pragma unroll
            for (int q = 0; q < 2; ++q) {
              const int cc = c0 + 8 * ct + 2 * tig + q;
#pragma unroll
              for (int k = 0; k < 2; ++k)
                ds[q][k] = cc < cend ? __half22float2(__ldg(a.xds + (size_t)cc * a.ldxds + b * UNITS + T::unit(t, k))) : make_float2(0.0f, 0.0f);
            }
#pragma unroll
            for (int e = 0; e < 4; ++e) {
              const Wt& w = e < 2 ? w0 : w1;
              const int h[2][2] = {{hs[0][0][e], hs[0][1][e]}, {hs[1][0][e], hs[1][1][e]}};
              int isum[2];
              T::isums_from_halves(w, h, isum);
              part[j][t][ct][e] += T::combine(w, isum, ds[e & 1]);
            }
          }
        }
        __syncwarp();
      }
    }

    // Meet in shared memory, one column tile at a time: red[v][r * 8 + column in tile].
    __syncthreads();  // every warp is done with its weight tile
#pragma unroll
    for (int ct = 0; ct < CT; ++ct) {
#pragma unroll
      for (int j = 0; j < W; ++j)
#pragma unroll
        for (int t = 0; t < 4; ++t)
#pragma unroll
          for (int e = 0; e < 4; ++e) {
            const int v = 4 * (warp + MMQ_WARPS * j) + t;
            red[v * (MMQ_ROWS * 8) + (g + 8 * (e >> 1)) * 8 + 2 * tig + (e & 1)] = part[j][t][ct][e];
          }
      __syncthreads();
      if (threadIdx.x < MMQ_ROWS * 8) {
        const int r = threadIdx.x >> 3, cl = threadIdx.x & 7, cc = c0 + 8 * ct + cl;
        float v = butterfly_lane0(red + threadIdx.x, MMQ_ROWS * 8);
#pragma unroll
        for (int ww = 1; ww < W; ++ww) v += butterfly_lane0(red + ww * 32 * (MMQ_ROWS * 8) + threadIdx.x, MMQ_ROWS * 8);
        if (cc < cend) {
          if (a.softcap > 0.0f) v = tanhf(v / a.softcap) * a.softcap;
          if (res) v += res[(size_t)cc * ldr + lr0 + r];
          out[(size_t)cc * ldo + lr0 + r] = v;
        }
        vals[r][cl] = v;
      }
      __syncthreads();
      if (a.argmax_val && threadIdx.x < 8) {
        // Rows in ascending order, the first of equal values kept: rbee_mmvq's rule.
        for (int r = 0; r < MMQ_ROWS; ++r) {
          const float v = vals[r][threadIdx.x];
          if (v > bv[ct]) {
            bv[ct] = v;
            bi[ct] = row0 + r;
          }
        }
      }
      __syncthreads();
    }
  }
  if (a.argmax_val && threadIdx.x < 8) {
#pragma unroll
    for (int ct = 0; ct < CT; ++ct) {
      const int cc = c0 + 8 * ct + threadIdx.x;
      if (cc < cend) {
        a.argmax_val[(size_t)cc * a.ld_argmax + blockIdx.x] = bv[ct];
        a.argmax_idx[(size_t)cc * a.ld_argmax + blockIdx.x] = bi[ct];
      }
    }
  }
}

}  // namespace rbee

using namespace rbee;

// grid: (F / 32, columns); block: 32.
extern "C" __global__ void __launch_bounds__(WARP) rbee_glu_q8_1(GluEpilogueArgs a) {
  pdl_enter();
  const int f = blockIdx.x * QK8_1 + threadIdx.x, c = blockIdx.y;
  const float v = glu_act(a.g[(size_t)c * a.ldg + f], a.u[(size_t)c * a.ldg + f], a.act);
  if (a.y) a.y[(size_t)c * a.ldy + f] = v;
  quantize_lane_q8_1(v, a.yq + (size_t)c * a.ldyq + blockIdx.x * QK8_1, a.yds + (size_t)c * a.ldyds + blockIdx.x);
}

#define RBEE_MMQ(name, T, W, NC)                                                                         \
  extern "C" __global__ void __launch_bounds__(MMQ_THREADS) rbee_mmq_##name##_w##W##_c##NC(MmvqArgs a) { \
    pdl_enter();                                                                                         \
    mmq_body<T, W, NC>(a);                                                                               \
  }
#define RBEE_MMQ_TYPE(name, T) \
  RBEE_MMQ(name, T, 1, 16)     \
  RBEE_MMQ(name, T, 1, 32)     \
  RBEE_MMQ(name, T, 2, 16)

RBEE_MMQ_TYPE(q4_k, TQ4_K)
RBEE_MMQ_TYPE(q5_k, TQ5_K)
RBEE_MMQ_TYPE(q6_k, TQ6_K)
