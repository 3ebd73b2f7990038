// rbee's decode kernels on one GPU, standalone: (a) each kernel against the CPU references in
// ref.h on random blocks, (b) each kernel timed at Llama-3-8B and Gemma-3-270M shapes, (c) a
// whole 8B-shaped Q4_K_M-like decode step (random weights) built from the kernels, captured once
// as a CUDA graph and replayed. Writes a log to stdout and a JSON summary to argv[1].
//
//   harness <summary.json> [--quick]      (run.sh builds and runs it)
//   harness <summary.json> --mmq | --prefill   (only those kernels' checks and timings)
//   harness --cpu-selftest                (only the CPU references' own consistency; no GPU)
#include <cublas_v2.h>
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <chrono>
#include <cstdarg>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "args.cuh"
#include "common.cuh"
#include "quants.cuh"
#include "ref.h"

using namespace rbee;

// ---------------------------------------------------------------------------------------------
// Small utilities

#define CK(x)                                                                                          \
  do {                                                                                                 \
    cudaError_t e_ = (x);                                                                              \
    if (e_ != cudaSuccess) {                                                                           \
      std::fprintf(stderr, "CUDA error %s at %s:%d: %s\n", cudaGetErrorName(e_), __FILE__, __LINE__, \
                   cudaGetErrorString(e_));                                                            \
      std::exit(2);                                                                                    \
    }                                                                                                  \
  } while (0)

static double g_peak_gbs = 3350.0;  // H100 SXM datasheet HBM3 bandwidth, GB/s

struct Rng {
  uint64_t s;
  explicit Rng(uint64_t seed) : s(seed) {}
  uint64_t next() {
    uint64_t z = (s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
  }
  float uni() { return (float)((next() >> 40) * (1.0 / 16777216.0)); }  // [0, 1)
  float sym() { return 2.0f * uni() - 1.0f; }
  float normalish() { return (uni() + uni() + uni() + uni() - 2.0f) * 1.7320508f; }
};

static std::string jesc(const std::string& s) {
  std::string o;
  for (char c : s) {
    if (c == '"' || c == '\\') o += '\\';
    o += c;
  }
  return o;
}
static std::string fmt(const char* f, ...) {
  char buf[1024];
  va_list ap;
  va_start(ap, f);
  std::vsnprintf(buf, sizeof buf, f, ap);
  va_end(ap);
  return buf;
}

struct Summary {
  std::vector<std::string> checks, timings, steps;
  int failed = 0, passed = 0;
  std::string device;
} S;

static void check(const std::string& name, bool ok, const std::string& detail) {
  std::printf("  [%s] %-58s %s\n", ok ? "PASS" : "FAIL", name.c_str(), detail.c_str());
  S.checks.push_back(fmt("{\"name\":\"%s\",\"pass\":%s,\"detail\":\"%s\"}", jesc(name).c_str(), ok ? "true" : "false",
                         jesc(detail).c_str()));
  (ok ? S.passed : S.failed)++;
}

template <class T>
struct Dev {
  T* p = nullptr;
  size_t n = 0;
  Dev() = default;
  explicit Dev(size_t count) { alloc(count); }
  void alloc(size_t count) {
    n = count;
    CK(cudaMalloc(&p, std::max<size_t>(count, 1) * sizeof(T)));
    CK(cudaMemset(p, 0, std::max<size_t>(count, 1) * sizeof(T)));
  }
  void up(const std::vector<T>& h) { CK(cudaMemcpy(p, h.data(), h.size() * sizeof(T), cudaMemcpyHostToDevice)); }
  std::vector<T> down() const {
    std::vector<T> h(n);
    CK(cudaMemcpy(h.data(), p, n * sizeof(T), cudaMemcpyDeviceToHost));
    return h;
  }
  ~Dev() {
    if (p) cudaFree(p);
  }
  Dev(const Dev&) = delete;
  Dev& operator=(const Dev&) = delete;
};

// Random ggml blocks: random bytes, then the scale fields set to finite values of a chosen size
// (for the checks any size works; the step wants weights of std ~ 1/sqrt(K)).
static void random_blocks(int type, uint8_t* p, size_t nblocks, Rng& rng, float dscale) {
  const int bb = ref::block_bytes(type);
  for (size_t i = 0; i < nblocks * bb; ++i) p[i] = (uint8_t)rng.next();
  for (size_t b = 0; b < nblocks; ++b) {
    uint8_t* blk = p + b * bb;
    auto put = [&](int off, float v) {
      const uint16_t h = ref::f2h(v);
      blk[off] = h & 0xff;
      blk[off + 1] = h >> 8;
    };
    const float d = dscale * (0.5f + rng.uni());
    switch (type) {
      case ref::Q4_K:
      case ref::Q5_K:
        put(0, d);
        put(2, dscale * (0.5f + rng.uni()));
        break;
      case ref::Q6_K: put(208, rng.uni() < 0.5f ? d : -d); break;
      default: put(0, rng.uni() < 0.5f ? d : -d); break;
    }
  }
}

// Device-side fill for the big step weights: words from a hash, then the scale fields.
__device__ __forceinline__ uint32_t hash32(uint64_t x) {
  x ^= x >> 33;
  x *= 0xff51afd7ed558ccdull;
  x ^= x >> 33;
  x *= 0xc4ceb9fe1a85ec53ull;
  x ^= x >> 33;
  return (uint32_t)x;
}
__global__ void fill_words(uint32_t* p, size_t n, uint64_t seed) {
  for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x)
    p[i] = hash32(seed * 0x100000001b3ull + i);
}
__global__ void fix_scales(uint8_t* p, size_t nblocks, int type, float dscale, uint64_t seed) {
  for (size_t b = blockIdx.x * (size_t)blockDim.x + threadIdx.x; b < nblocks; b += (size_t)gridDim.x * blockDim.x) {
    const uint32_t h = hash32(seed ^ (b * 0x9E3779B97F4A7C15ull));
    const float d = dscale * (0.5f + (h & 0xffff) / 65536.0f), d2 = dscale * (0.5f + (h >> 16) / 65536.0f);
    uint8_t* blk = p + b * block_bytes(type);
    auto put = [&](int off, float v) {
      const half hv = __float2half_rn(v);
      const uint16_t bits = *reinterpret_cast<const uint16_t*>(&hv);
      blk[off] = bits & 0xff;
      blk[off + 1] = bits >> 8;
    };
    if (type == Q4_K || type == Q5_K) {
      put(0, d);
      put(2, d2);
    } else if (type == Q6_K) {
      put(208, (h & 1) ? d : -d);
    } else {
      put(0, (h & 1) ? d : -d);
    }
  }
}
__global__ void fill_half(half* p, size_t n, size_t period, uint64_t seed, float amp) {
  for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) {
    const uint32_t h = hash32(seed * 0x100000001b3ull + (i % period));
    p[i] = __float2half_rn(amp * ((float)(h >> 8) / 8388608.0f - 1.0f));
  }
}
__global__ void fill_float(float* p, size_t n, uint64_t seed, float base, float amp) {
  for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) {
    const uint32_t h = hash32(seed * 0x100000001b3ull + i);
    p[i] = base + amp * ((float)(h >> 8) / 8388608.0f - 1.0f);
  }
}

// Weight std of a random block divided by its d, roughly: sets d so a row dot has unit scale.
static float typical(int type) {
  switch (type) {
    case Q4_0: return 4.6f;
    case Q5_0: return 9.2f;
    case Q8_0: return 74.0f;
    case Q4_K: return 250.0f;
    case Q5_K: return 500.0f;
    default: return 1370.0f;
  }
}

// ---------------------------------------------------------------------------------------------
// Launch helpers (what the crate will do through cudarc)

typedef void (*MmvqFn)(MmvqArgs);
typedef void (*GluFn)(GluArgs);
typedef void (*IsumFn)(const uint8_t*, long long, int, int, const int8_t*, int, int, int*);

#define RBEE_FN_TABLE(name)                                                                                 \
  {rbee_mmvq_##name##_1, rbee_mmvq_##name##_2, rbee_mmvq_##name##_3, rbee_mmvq_##name##_4, rbee_mmvq_##name##_5, \
   rbee_mmvq_##name##_6, rbee_mmvq_##name##_7, rbee_mmvq_##name##_8}
#define RBEE_GLU_TABLE(name)                                                                                             \
  {rbee_mmvq_glu_##name##_1, rbee_mmvq_glu_##name##_2, rbee_mmvq_glu_##name##_3, rbee_mmvq_glu_##name##_4,                 \
   rbee_mmvq_glu_##name##_5, rbee_mmvq_glu_##name##_6, rbee_mmvq_glu_##name##_7, rbee_mmvq_glu_##name##_8}

static MmvqFn mmvq_fn(int type, int nc) {
  static const MmvqFn q4_0[8] = RBEE_FN_TABLE(q4_0), q5_0[8] = RBEE_FN_TABLE(q5_0), q8_0[8] = RBEE_FN_TABLE(q8_0),
                      q4_k[8] = RBEE_FN_TABLE(q4_k), q5_k[8] = RBEE_FN_TABLE(q5_k), q6_k[8] = RBEE_FN_TABLE(q6_k);
  const MmvqFn* t = type == Q4_0 ? q4_0 : type == Q5_0 ? q5_0 : type == Q8_0 ? q8_0 : type == Q4_K ? q4_k : type == Q5_K ? q5_k : q6_k;
  return t[nc - 1];
}
static GluFn glu_fn(int type, int nc) {
  static const GluFn q4_0[8] = RBEE_GLU_TABLE(q4_0), q5_0[8] = RBEE_GLU_TABLE(q5_0), q8_0[8] = RBEE_GLU_TABLE(q8_0),
                     q4_k[8] = RBEE_GLU_TABLE(q4_k), q5_k[8] = RBEE_GLU_TABLE(q5_k), q6_k[8] = RBEE_GLU_TABLE(q6_k);
  const GluFn* t = type == Q4_0 ? q4_0 : type == Q5_0 ? q5_0 : type == Q8_0 ? q8_0 : type == Q4_K ? q4_k : type == Q5_K ? q5_k : q6_k;
  return t[nc - 1];
}
static IsumFn isum_fn(int type) {
  return type == Q4_0 ? rbee_mmvq_isums_q4_0 : type == Q5_0 ? rbee_mmvq_isums_q5_0 : type == Q8_0 ? rbee_mmvq_isums_q8_0
       : type == Q4_K ? rbee_mmvq_isums_q4_k : type == Q5_K ? rbee_mmvq_isums_q5_k : rbee_mmvq_isums_q6_k;
}

static int g_sms = 132;

// Warps per row: enough warps in flight to cover the GPU, as long as each warp keeps >= 1 task per lane.
static int default_wpr(int rows, int K, int type) {
  const int tasks = K / ref::block_values(type) * (ref::block_values(type) == 256 ? 4 : 1);
  int w = 1;
  while (w < 4 && rows * w < g_sms * 32 && tasks >= 64 * w) w *= 2;
  return w;
}

static void launch_mmvq(cudaStream_t st, int type, int nc, MmvqArgs a, int grid_cap = 0) {
  const int total = a.seg[0].rows + (a.nseg > 1 ? a.seg[1].rows : 0) + (a.nseg > 2 ? a.seg[2].rows : 0);
  const int R = 4 / a.warps_per_row;
  int grid = (total + R - 1) / R;
  if (grid_cap > 0) grid = std::min(grid, grid_cap);
  if (a.argmax_val) a.ld_argmax = grid;
  mmvq_fn(type, nc)<<<grid, 128, 0, st>>>(a);
}
static int head_grid(int rows, int wpr) { return std::min((rows + 4 / wpr - 1) / (4 / wpr), 4 * g_sms * 8); }

static void launch_glu(cudaStream_t st, int type, int nc, GluArgs a) {
  glu_fn(type, nc)<<<a.F / 32, 256, 0, st>>>(a);
}
static void launch_norm(cudaStream_t st, int rows, NormArgs a) {
  rbee_rmsnorm_q8_1<<<rows, 1024, a.K * sizeof(float), st>>>(a);
}
static void launch_rope(cudaStream_t st, int rows, RopeArgs a) {
  rbee_rope_kv<<<dim3(a.n_head + 2 * a.n_kv, rows), a.hd / 2, 0, st>>>(a);
}
static void launch_attn(cudaStream_t st, int rows, int hd, AttnArgs a, AttnReduceArgs r) {
  const dim3 g1(a.nsplit, a.n_kv, rows), g2(a.n_head, rows);
  if (hd == 64) {
    rbee_attn_split_64<<<g1, 128, 0, st>>>(a);
    rbee_attn_reduce_64<<<g2, 64, 0, st>>>(r);
  } else if (hd == 128) {
    rbee_attn_split_128<<<g1, 128, 0, st>>>(a);
    rbee_attn_reduce_128<<<g2, 128, 0, st>>>(r);
  } else {
    rbee_attn_split_256<<<g1, 128, 0, st>>>(a);
    rbee_attn_reduce_256<<<g2, 256, 0, st>>>(r);
  }
}

// Device copies of host q8_1 planes.
struct DQ8 {
  Dev<int8_t> qs;
  Dev<half2> ds;
  int ld = 0, ldds = 0;
  void from(const ref::Q8& h) {
    ld = h.ld;
    ldds = h.K / 32;
    qs.alloc(h.qs.size());
    qs.up(h.qs);
    ds.alloc(h.ds.size() / 2);
    CK(cudaMemcpy(ds.p, h.ds.data(), h.ds.size() * 2, cudaMemcpyHostToDevice));
  }
};

// A one-segment product's arguments: `rows` weight rows at `w` (row stride `stride` bytes) into
// out[c * rows + r], activations from column `col` of `dx` on. Callers add segments, heads, etc.
static MmvqArgs product_args(const uint8_t* w, float* out, int rows, const DQ8& dx, int col, size_t stride, int K, int wpr) {
  MmvqArgs a{};
  a.seg[0] = MmvqSeg{w, out, nullptr, rows, rows, 0, 0};
  a.nseg = 1;
  a.xq = dx.qs.p + (size_t)col * dx.ld;
  a.xds = dx.ds.p + (size_t)col * dx.ldds;
  a.ldxq = dx.ld;
  a.ldxds = dx.ldds;
  a.w_stride = (long long)stride;
  a.K = K;
  a.warps_per_row = wpr;
  return a;
}

static std::vector<float> random_floats(size_t n, Rng& rng, float amp = 1.0f) {
  std::vector<float> v(n);
  for (auto& x : v) x = amp * rng.normalish();
  return v;
}

// ---------------------------------------------------------------------------------------------
// (a) Checks against the CPU references

static void check_norm() {
  std::printf("\n== RMSNorm + q8_1 (bit-exact: the reduction order is replayed) ==\n");
  Rng rng(11);
  for (int K : {640, 2048, 4096}) {
    for (bool pre : {false, true}) {
      const int rows = 5;
      auto x = random_floats((size_t)rows * K, rng, 3.0f), p = random_floats((size_t)rows * K, rng);
      auto w = random_floats(K, rng, 0.5f), wp = random_floats(K, rng, 0.5f);
      for (auto& v : w) v += 1.0f;
      Dev<float> dx(x.size()), dp(p.size()), dw(K), dwp(K), dy(x.size());
      dx.up(x);
      dp.up(p);
      dw.up(w);
      dwp.up(wp);
      const int ldq = K;
      Dev<int8_t> q((size_t)rows * ldq);
      Dev<half2> ds((size_t)rows * K / 32);
      NormArgs a{};
      a.x = dx.p;
      a.pre = pre ? dp.p : nullptr;
      a.w_pre = dwp.p;
      a.w = dw.p;
      a.yq = q.p;
      a.yds = ds.p;
      a.y = dy.p;
      a.ldx = a.ldpre = a.ldy = K;
      a.ldyq = ldq;
      a.ldyds = K / 32;
      a.K = K;
      a.eps = 1e-6f;
      launch_norm(0, rows, a);
      CK(cudaDeviceSynchronize());
      auto gq = q.down();
      auto gds = ds.down();
      auto gx = dx.down();
      auto gy = dy.down();
      // Reference.
      std::vector<float> xr = x;
      size_t bad_x = 0, bad_y = 0, bad_q = 0, bad_ds = 0;
      for (int r = 0; r < rows; ++r) {
        float* xrow = &xr[(size_t)r * K];
        if (pre) {
          const float sp = ref::norm_scale(&p[(size_t)r * K], K, 1e-6f);
          for (int i = 0; i < K; ++i) xrow[i] = xrow[i] + (p[(size_t)r * K + i] * sp) * wp[i];
        }
        const float sc = ref::norm_scale(xrow, K, 1e-6f);
        std::vector<float> y(K);
        for (int i = 0; i < K; ++i) y[i] = (xrow[i] * sc) * w[i];
        for (int i = 0; i < K; ++i) {
          bad_x += std::memcmp(&xrow[i], &gx[(size_t)r * K + i], 4) != 0;
          bad_y += std::memcmp(&y[i], &gy[(size_t)r * K + i], 4) != 0;
        }
        for (int b = 0; b < K / 32; ++b) {
          int8_t qq[32];
          uint16_t d, s;
          ref::quantize_block_q8_1(&y[32 * b], qq, &d, &s);
          for (int i = 0; i < 32; ++i) bad_q += qq[i] != gq[(size_t)r * ldq + 32 * b + i];
          const half2 g = gds[(size_t)r * K / 32 + b];
          uint16_t gd, gs;
          std::memcpy(&gd, &g.x, 2);
          std::memcpy(&gs, &g.y, 2);
          bad_ds += (gd != d) + (gs != s);
        }
      }
      check(fmt("rmsnorm_q8_1 K=%d%s", K, pre ? " +post-norm residual" : ""), bad_x + bad_y + bad_q + bad_ds == 0,
            fmt("mismatches: x %zu, y %zu, q %zu, d/s %zu of %d values", bad_x, bad_y, bad_q, bad_ds, rows * K));
    }
  }
  // The plain quantizer.
  const int rows = 3, K = 1024;
  auto x = random_floats((size_t)rows * K, rng, 2.0f);
  for (int i = 0; i < 32; ++i) x[64 + i] = 0.0f;  // an all-zero block
  Dev<float> dx(x.size());
  dx.up(x);
  Dev<int8_t> q((size_t)rows * K);
  Dev<half2> ds((size_t)rows * K / 32);
  rbee_quantize_q8_1<<<dim3((K / 32 + 7) / 8, rows), 256>>>(dx.p, K, K, q.p, K, ds.p, K / 32);
  CK(cudaDeviceSynchronize());
  auto ref8 = ref::quantize_rows(x.data(), rows, K);
  auto gq = q.down();
  auto gds = ds.down();
  size_t bad = 0;
  for (size_t i = 0; i < gq.size(); ++i) bad += gq[i] != ref8.qs[i];
  bad += std::memcmp(gds.data(), ref8.ds.data(), ref8.ds.size() * 2) != 0;
  check("quantize_q8_1 (incl. an all-zero block)", bad == 0, fmt("%zu mismatches", bad));
}

struct MmvqCase {
  int type, rows, K;
};

static void check_mmvq() {
  std::printf("\n== quantized mat-vec: integer unit sums bit-exact, floats within 2e-6 * sum|terms| ==\n");
  Rng rng(22);
  const int types[] = {Q4_0, Q5_0, Q8_0, Q4_K, Q5_K, Q6_K};
  for (int type : types) {
    const int K = ref::block_values(type) == 256 ? 2048 : 640 * 2;
    const int rows = 157;  // not a multiple of 4: the last block has empty row slots
    const size_t rb = (size_t)K / ref::block_values(type) * ref::block_bytes(type);
    std::vector<uint8_t> w(rows * rb);
    random_blocks(type, w.data(), w.size() / ref::block_bytes(type), rng, 0.01f);
    auto xf = random_floats((size_t)8 * K, rng);
    auto xq = ref::quantize_rows(xf.data(), 8, K);
    std::vector<double> want, mag;
    std::vector<int> want_is;
    ref::matvec(type, w.data(), rb, rows, K, xq, want, mag, &want_is);
    Dev<uint8_t> dw(w.size());
    dw.up(w);
    DQ8 dx;
    dx.from(xq);
    // Integer sums.
    Dev<int> is((size_t)8 * rows * (K / 32));
    isum_fn(type)<<<rows, 32>>>(dw.p, (long long)rb, rows, K, dx.qs.p, dx.ld, 8, is.p);
    CK(cudaDeviceSynchronize());
    auto gis = is.down();
    size_t bad_is = 0;
    for (size_t i = 0; i < gis.size(); ++i) bad_is += gis[i] != want_is[i];
    check(fmt("%s integer unit sums, %d rows x K=%d x 8 columns", ref::type_name(type), rows, K), bad_is == 0,
          fmt("%zu of %zu differ", bad_is, gis.size()));
    // Float outputs, every batch width and warps-per-row; batch invariance.
    std::vector<std::vector<float>> by_nc(9);
    for (int wpr : {1, 2, 4}) {
      double worst = 0.0;
      bool ok = true;
      for (int nc = 1; nc <= 8; ++nc) {
        Dev<float> out((size_t)nc * rows);
        MmvqArgs a = product_args(dw.p, out.p, rows, dx, 0, rb, K, wpr);
        launch_mmvq(0, type, nc, a);
        CK(cudaDeviceSynchronize());
        auto g = out.down();
        for (int c = 0; c < nc; ++c)
          for (int r = 0; r < rows; ++r) {
            const size_t i = (size_t)c * rows + r;
            const double err = std::fabs(g[i] - want[i]), tol = 2e-6 * mag[i] + 1e-30;
            worst = std::max(worst, err / (mag[i] + 1e-30));
            if (!(err <= tol)) ok = false;
          }
        if (wpr == 1) by_nc[nc] = g;
      }
      check(fmt("%s mmvq vs reference, nc 1..8, %d warp(s)/row", ref::type_name(type), wpr), ok,
            fmt("worst |err| / sum|terms| = %.2e", worst));
    }
    size_t diff = 0;
    for (int nc = 2; nc <= 8; ++nc)
      for (int c = 0; c < nc; ++c) diff += std::memcmp(&by_nc[nc][(size_t)c * rows], &by_nc[8][(size_t)c * rows], rows * 4) != 0;
    // Column c of a batch equals the same column computed alone (its activation moved to column 0).
    size_t alone_diff = 0;
    for (int c = 0; c < 8; ++c) {
      Dev<float> out(rows);
      MmvqArgs a = product_args(dw.p, out.p, rows, dx, c, rb, K, 1);
      launch_mmvq(0, type, 1, a);
      CK(cudaDeviceSynchronize());
      auto g = out.down();
      alone_diff += std::memcmp(g.data(), &by_nc[8][(size_t)c * rows], rows * 4) != 0;
    }
    check(fmt("%s batch-invariant: column bits equal for nc 1..8 and alone", ref::type_name(type)), diff + alone_diff == 0,
          fmt("%zu column(s) differ", diff + alone_diff));
  }

  // Three segments (fused QKV) with a residual on the second, and a row stride wider than the row.
  {
    const int type = Q4_K, K = 1024, r0 = 64, r1 = 37, r2 = 50;
    const size_t rb = (size_t)K / 256 * 144, stride = rb + 144;
    std::vector<uint8_t> w((size_t)(r0 + r1 + r2) * stride);
    random_blocks(type, w.data(), w.size() / 144, rng, 0.01f);
    auto xf = random_floats((size_t)3 * K, rng);
    auto xq = ref::quantize_rows(xf.data(), 3, K);
    auto res = random_floats((size_t)3 * r1, rng);
    Dev<uint8_t> dw(w.size());
    dw.up(w);
    DQ8 dx;
    dx.from(xq);
    Dev<float> o0(3 * r0), o1(3 * r1), o2(3 * r2);
    o1.up(res);
    MmvqArgs a = product_args(dw.p, o0.p, r0, dx, 0, stride, K, 2);
    a.seg[1] = MmvqSeg{dw.p + r0 * stride, o1.p, o1.p, r1, r1, r1, 0};
    a.seg[2] = MmvqSeg{dw.p + (r0 + r1) * stride, o2.p, nullptr, r2, r2, 0, 0};
    a.nseg = 3;
    launch_mmvq(0, type, 3, a);
    CK(cudaDeviceSynchronize());
    std::vector<double> want, mag;
    ref::matvec(type, w.data(), stride, r0 + r1 + r2, K, xq, want, mag);
    auto g0 = o0.down(), g1 = o1.down(), g2 = o2.down();
    bool ok = true;
    const int total = r0 + r1 + r2;
    for (int c = 0; c < 3; ++c)
      for (int r = 0; r < total; ++r) {
        double got;
        double expect = want[(size_t)c * total + r];
        if (r < r0) got = g0[c * r0 + r];
        else if (r < r0 + r1) {
          got = g1[c * r1 + r - r0];
          expect += res[c * r1 + r - r0];
        } else got = g2[c * r2 + r - r0 - r1];
        if (!(std::fabs(got - expect) <= 2e-6 * mag[(size_t)c * total + r] + 1e-6 * std::fabs(expect))) ok = false;
      }
    check("q4_k mmvq, 3 segments (fused QKV) + residual + padded row stride", ok, "");
  }

  // Output head: softcap, per-block argmax partials, final greedy pick.
  {
    const int type = Q8_0, K = 640, rows = 20000, nc = 4;
    const size_t rb = (size_t)K / 32 * 34;
    std::vector<uint8_t> w(rows * rb);
    random_blocks(type, w.data(), w.size() / 34, rng, 0.01f);
    auto xf = random_floats((size_t)nc * K, rng);
    auto xq = ref::quantize_rows(xf.data(), nc, K);
    Dev<uint8_t> dw(w.size());
    dw.up(w);
    DQ8 dx;
    dx.from(xq);
    const int wpr = 1, grid = 300;
    Dev<float> logits((size_t)nc * rows), pv((size_t)nc * grid);
    Dev<int> pi((size_t)nc * grid), tok(nc), pos(nc);
    MmvqArgs a = product_args(dw.p, logits.p, rows, dx, 0, rb, K, wpr);
    a.argmax_val = pv.p;
    a.argmax_idx = pi.p;
    a.softcap = 30.0f;
    launch_mmvq(0, type, nc, a, grid);
    rbee_argmax_final<<<nc, 256>>>(pv.p, pi.p, grid, grid, tok.p, nullptr, pos.p);
    CK(cudaDeviceSynchronize());
    std::vector<double> want, mag;
    ref::matvec(type, w.data(), rb, rows, K, xq, want, mag);
    auto gl = logits.down();
    auto gt = tok.down();
    auto gp = pos.down();
    bool ok_l = true, ok_t = true;
    for (int c = 0; c < nc; ++c) {
      int best = 0;
      for (int r = 0; r < rows; ++r) {
        const size_t i = (size_t)c * rows + r;
        const double e = std::tanh(want[i] / 30.0) * 30.0;
        if (!(std::fabs(gl[i] - e) <= 2e-6 * mag[i] + 2e-6 * 30.0)) ok_l = false;
        if (gl[i] > gl[(size_t)c * rows + best]) best = r;
      }
      ok_t &= gt[c] == best && gp[c] == 1;
    }
    check("q8_0 output head: softcap 30, logits vs reference", ok_l, "");
    check("greedy argmax over the head's block partials == argmax of its logits", ok_t, fmt("tokens %d %d %d %d", gt[0], gt[1], gt[2], gt[3]));
  }
  // Ties and empty partials in the final pick.
  {
    std::vector<float> v = {1.0f, 5.0f, -INFINITY, 5.0f, 5.0f, 2.0f};
    std::vector<int> i = {3, 40, -1, 17, 90, 1};
    Dev<float> dv(v.size());
    Dev<int> di(i.size()), tok(1);
    dv.up(v);
    di.up(i);
    rbee_argmax_final<<<1, 256>>>(dv.p, di.p, 6, 6, tok.p, nullptr, nullptr);
    CK(cudaDeviceSynchronize());
    check("argmax_final: equal maxima pick the lowest id, empty parts ignored", tok.down()[0] == 17, fmt("got %d", tok.down()[0]));
  }
}

static void check_glu() {
  std::printf("\n== gate+up with SiLU / GELU, quantized for the down projection ==\n");
  Rng rng(33);
  for (int type : {Q4_K, Q5_0, Q6_K}) {
    for (int act : {0, 1}) {
      const int K = ref::block_values(type) == 256 ? 1024 : 640, F = 256, nc = 8;
      const size_t rb = (size_t)K / ref::block_values(type) * ref::block_bytes(type);
      std::vector<uint8_t> wg(F * rb), wu(F * rb);
      random_blocks(type, wg.data(), wg.size() / ref::block_bytes(type), rng, 0.004f);
      random_blocks(type, wu.data(), wu.size() / ref::block_bytes(type), rng, 0.004f);
      auto xf = random_floats((size_t)nc * K, rng);
      auto xq = ref::quantize_rows(xf.data(), nc, K);
      Dev<uint8_t> dg(wg.size()), du(wu.size());
      dg.up(wg);
      du.up(wu);
      DQ8 dx;
      dx.from(xq);
      std::vector<float> outs[2];
      std::vector<int8_t> qouts[2];
      std::vector<half2> dsouts[2];
      for (int pass = 0; pass < 2; ++pass) {
        const int n = pass == 0 ? nc : 1;
        Dev<float> y((size_t)n * F);
        Dev<int8_t> yq((size_t)n * F);
        Dev<half2> yds((size_t)n * F / 32);
        GluArgs a{};
        a.w_gate = dg.p;
        a.w_up = du.p;
        a.xq = dx.qs.p + (pass ? 5 * (size_t)dx.ld : 0);
        a.xds = dx.ds.p + (pass ? 5 * (size_t)dx.ldds : 0);
        a.yq = yq.p;
        a.yds = yds.p;
        a.y = y.p;
        a.w_stride = (long long)rb;
        a.K = K;
        a.F = F;
        a.ldxq = dx.ld;
        a.ldxds = dx.ldds;
        a.ldyq = F;
        a.ldyds = F / 32;
        a.ldy = F;
        a.act = act;
        launch_glu(0, type, n, a);
        CK(cudaDeviceSynchronize());
        outs[pass] = y.down();
        qouts[pass] = yq.down();
        dsouts[pass] = yds.down();
      }
      std::vector<double> g, gm, u, um;
      ref::matvec(type, wg.data(), rb, F, K, xq, g, gm);
      ref::matvec(type, wu.data(), rb, F, K, xq, u, um);
      bool ok = true;
      double worst = 0;
      for (int c = 0; c < nc; ++c)
        for (int f = 0; f < F; ++f) {
          const size_t i = (size_t)c * F + f;
          const double x = g[i];
          const double a = act ? 0.5 * x * (1.0 + std::tanh(0.7978845608028654 * x * (1.0 + 0.044715 * x * x))) : x / (1.0 + std::exp(-x));
          const double want = a * u[i];
          const double tol = 1.2 * 2e-6 * gm[i] * std::fabs(u[i]) + 2e-6 * um[i] * std::fabs(a) + 1e-5 * std::fabs(want) + 1e-30;
          const double err = std::fabs(outs[0][i] - want);
          worst = std::max(worst, err / tol);
          if (!(err <= tol)) ok = false;
        }
      // The quantized output is exactly q8_1 of the f32 output.
      size_t bad = 0;
      for (int c = 0; c < nc; ++c)
        for (int b = 0; b < F / 32; ++b) {
          int8_t q[32];
          uint16_t d, s;
          ref::quantize_block_q8_1(&outs[0][(size_t)c * F + 32 * b], q, &d, &s);
          bad += std::memcmp(q, &qouts[0][(size_t)c * F + 32 * b], 32) != 0;
          uint16_t gd, gs;
          std::memcpy(&gd, &dsouts[0][(size_t)c * F / 32 + b].x, 2);
          std::memcpy(&gs, &dsouts[0][(size_t)c * F / 32 + b].y, 2);
          bad += gd != d || gs != s;
        }
      const bool inv = std::memcmp(&outs[0][5 * (size_t)F], outs[1].data(), F * 4) == 0;
      check(fmt("%s glu %s: vs reference, q8_1 output exact, batch-invariant", ref::type_name(type), act ? "gelu" : "silu"),
            ok && bad == 0 && inv, fmt("worst err/tol %.2f, %zu bad q8_1 blocks, column 5 alone %s", worst, bad, inv ? "equal" : "DIFFERS"));
    }
  }
}

struct RopeCase {
  int n_head, n_kv, hd, n_rot, neox;
  bool norm;
};

static void check_rope() {
  std::printf("\n== RoPE + KV-cache write ==\n");
  Rng rng(44);
  const RopeCase cases[] = {{32, 8, 128, 128, 0, false}, {4, 1, 256, 256, 1, true}, {8, 2, 64, 32, 1, false}, {14, 2, 64, 64, 0, true}};
  for (const auto& rc : cases) {
    const int rows = 3, cap = 300, slots = 4;
    const float base = 10000.0f, fscale = 0.5f, eps = 1e-6f;
    auto q = random_floats((size_t)rows * rc.n_head * rc.hd, rng), k = random_floats((size_t)rows * rc.n_kv * rc.hd, rng),
         v = random_floats((size_t)rows * rc.n_kv * rc.hd, rng);
    auto qn = random_floats(rc.hd, rng, 0.3f), kn = random_floats(rc.hd, rng, 0.3f);
    std::vector<float> inv(rc.n_rot / 2), ff(rc.n_rot / 2);
    for (int i = 0; i < rc.n_rot / 2; ++i) {
      inv[i] = std::pow(base, -2.0f * i / rc.n_rot);
      ff[i] = 1.0f + 0.5f * rng.uni();
    }
    std::vector<int> pos = {0, 7, 299}, slot = {2, 0, 3};
    Dev<float> dq(q.size()), dk(k.size()), dv(v.size()), dqo(q.size()), dqn(rc.hd), dkn(rc.hd), dinv(inv.size()), dff(ff.size());
    Dev<int> dpos(rows), dslot(rows);
    dq.up(q);
    dk.up(k);
    dv.up(v);
    dqn.up(qn);
    dkn.up(kn);
    dinv.up(inv);
    dff.up(ff);
    dpos.up(pos);
    dslot.up(slot);
    const size_t ss = (size_t)rc.n_kv * cap * rc.hd;
    Dev<half> kc(slots * ss), vc(slots * ss);
    RopeArgs a{};
    a.q = dq.p;
    a.k = dk.p;
    a.v = dv.p;
    a.q_out = dqo.p;
    a.k_cache = kc.p;
    a.v_cache = vc.p;
    a.pos = dpos.p;
    a.slot = dslot.p;
    a.inv_freq = dinv.p;
    a.freq_factors = dff.p;
    a.q_norm = rc.norm ? dqn.p : nullptr;
    a.k_norm = rc.norm ? dkn.p : nullptr;
    a.slot_stride = (long long)ss;
    a.ldq = a.ldqo = rc.n_head * rc.hd;
    a.ldk = a.ldv = rc.n_kv * rc.hd;
    a.n_head = rc.n_head;
    a.n_kv = rc.n_kv;
    a.hd = rc.hd;
    a.n_rot = rc.n_rot;
    a.cap = cap;
    a.neox = rc.neox;
    a.freq_scale = fscale;
    a.eps = eps;
    launch_rope(0, rows, a);
    CK(cudaDeviceSynchronize());
    auto gq = dqo.down();
    auto gk = kc.down();
    auto gv = vc.down();
    double worst = 0;
    size_t bad_v = 0;
    bool ok = true;
    auto rot = [&](const float* src, const float* nw, int p, std::vector<double>& out) {
      std::vector<double> x(rc.hd);
      double ssum = 0;
      for (int e = 0; e < rc.hd; ++e) ssum += (double)src[e] * src[e];
      const double sc = 1.0 / std::sqrt(ssum / rc.hd + eps);
      for (int e = 0; e < rc.hd; ++e) x[e] = nw ? src[e] * sc * nw[e] : src[e];
      out = x;
      for (int i = 0; i < rc.n_rot / 2; ++i) {
        float th = (float)p * inv[i];  // the kernel's float theta, replayed
        th = th / ff[i];
        th = fscale * th;
        const int e0 = rc.neox ? i : 2 * i, e1 = rc.neox ? i + rc.n_rot / 2 : 2 * i + 1;
        out[e0] = x[e0] * std::cos((double)th) - x[e1] * std::sin((double)th);
        out[e1] = x[e0] * std::sin((double)th) + x[e1] * std::cos((double)th);
      }
    };
    for (int r = 0; r < rows; ++r) {
      std::vector<double> o;
      for (int h = 0; h < rc.n_head; ++h) {
        rot(&q[((size_t)r * rc.n_head + h) * rc.hd], rc.norm ? qn.data() : nullptr, pos[r], o);
        for (int e = 0; e < rc.hd; ++e) {
          const double err = std::fabs(gq[((size_t)r * rc.n_head + h) * rc.hd + e] - o[e]);
          worst = std::max(worst, err);
          if (err > 2e-5 * 8) ok = false;
        }
      }
      for (int g = 0; g < rc.n_kv; ++g) {
        rot(&k[((size_t)r * rc.n_kv + g) * rc.hd], rc.norm ? kn.data() : nullptr, pos[r], o);
        const size_t at = slot[r] * ss + ((size_t)g * cap + pos[r]) * rc.hd;
        for (int e = 0; e < rc.hd; ++e) {
          uint16_t hb;
          std::memcpy(&hb, &gk[at + e], 2);
          const double err = std::fabs(ref::h2f(hb) - o[e]);
          if (err > 2e-5 * 8 + std::fabs(o[e]) * 1.0 / 1024) ok = false;
          uint16_t vb;
          std::memcpy(&vb, &gv[at + e], 2);
          bad_v += vb != ref::f2h(v[((size_t)r * rc.n_kv + g) * rc.hd + e]);
        }
      }
    }
    check(fmt("rope_kv heads %d/%d hd %d rot %d %s%s", rc.n_head, rc.n_kv, rc.hd, rc.n_rot, rc.neox ? "neox" : "normal",
              rc.norm ? " +q/k norm" : ""),
          ok && bad_v == 0, fmt("worst q err %.2e (bound 1.6e-4 for |x|<~8), v cache mismatches %zu", worst, bad_v));
  }
}

struct AttnCase {
  int n_head, n_kv, hd, nsplit, window;
};

static void check_attention() {
  std::printf("\n== flash-decoding attention (split + reduce) ==\n");
  Rng rng(55);
  const AttnCase cases[] = {{32, 8, 128, 16, 0}, {32, 8, 128, 1, 0}, {4, 1, 256, 8, 0}, {4, 1, 256, 5, 512}, {16, 2, 64, 3, 0}, {8, 8, 64, 32, 0}};
  for (const auto& ac : cases) {
    const int rows = 4, cap = 1100, slots = 5;
    const size_t ss = (size_t)ac.n_kv * cap * ac.hd;
    std::vector<uint16_t> kh(slots * ss), vh(slots * ss);
    for (auto& x : kh) x = ref::f2h(rng.sym());
    for (auto& x : vh) x = ref::f2h(rng.sym());
    auto q = random_floats((size_t)rows * ac.n_head * ac.hd, rng, 0.3f);
    std::vector<int> pos = {0, 5, 1099, 700}, slot = {4, 1, 0, 2};
    Dev<half> dk(kh.size()), dv(vh.size());
    CK(cudaMemcpy(dk.p, kh.data(), kh.size() * 2, cudaMemcpyHostToDevice));
    CK(cudaMemcpy(dv.p, vh.data(), vh.size() * 2, cudaMemcpyHostToDevice));
    Dev<float> dq(q.size()), po((size_t)rows * ac.n_head * ac.nsplit * ac.hd), out((size_t)rows * ac.n_head * ac.hd);
    Dev<float2> pml((size_t)rows * ac.n_head * ac.nsplit);
    Dev<int> dpos(rows), dslot(rows);
    Dev<int8_t> yq((size_t)rows * ac.n_head * ac.hd);
    Dev<half2> yds((size_t)rows * ac.n_head * ac.hd / 32);
    dq.up(q);
    dpos.up(pos);
    dslot.up(slot);
    const float scale = 1.0f / std::sqrt((float)ac.hd) * 2.0f;
    AttnArgs a{};
    a.q = dq.p;
    a.k_cache = dk.p;
    a.v_cache = dv.p;
    a.pos = dpos.p;
    a.slot = dslot.p;
    a.part_o = po.p;
    a.part_ml = pml.p;
    a.slot_stride = (long long)ss;
    a.ldq = ac.n_head * ac.hd;
    a.n_head = ac.n_head;
    a.n_kv = ac.n_kv;
    a.cap = cap;
    a.nsplit = ac.nsplit;
    a.window = ac.window;
    a.scale = scale;
    AttnReduceArgs rr{};
    rr.part_o = po.p;
    rr.part_ml = pml.p;
    rr.out = out.p;
    rr.yq = yq.p;
    rr.yds = yds.p;
    rr.n_head = ac.n_head;
    rr.nsplit = ac.nsplit;
    rr.ldo = rr.ldyq = ac.n_head * ac.hd;
    rr.ldyds = ac.n_head * ac.hd / 32;
    launch_attn(0, rows, ac.hd, a, rr);
    CK(cudaDeviceSynchronize());
    auto go = out.down();
    auto gq = yq.down();
    auto gds = yds.down();
    const int G = ac.n_head / ac.n_kv;
    double worst = 0;
    for (int r = 0; r < rows; ++r)
      for (int h = 0; h < ac.n_head; ++h) {
        const int g = h / G, p = pos[r];
        const int first = ac.window > 0 ? std::max(0, p - ac.window + 1) : 0;
        const size_t base = slot[r] * ss + (size_t)g * cap * ac.hd;
        std::vector<double> s(p + 1 - first);
        double m = -1e300;
        for (int j = first; j <= p; ++j) {
          double d = 0;
          for (int e = 0; e < ac.hd; ++e) d += (double)q[((size_t)r * ac.n_head + h) * ac.hd + e] * ref::h2f(kh[base + (size_t)j * ac.hd + e]);
          s[j - first] = d * scale;
          m = std::max(m, s[j - first]);
        }
        double l = 0;
        for (auto& x : s) l += (x = std::exp(x - m));
        for (int e = 0; e < ac.hd; ++e) {
          double o = 0;
          for (int j = first; j <= p; ++j) o += s[j - first] * ref::h2f(vh[base + (size_t)j * ac.hd + e]);
          worst = std::max(worst, std::fabs(go[((size_t)r * ac.n_head + h) * ac.hd + e] - o / l));
        }
      }
    size_t bad = 0;
    for (size_t b = 0; b < go.size() / 32; ++b) {
      int8_t qq[32];
      uint16_t d, s;
      ref::quantize_block_q8_1(&go[32 * b], qq, &d, &s);
      uint16_t gd, gs;
      std::memcpy(&gd, &gds[b].x, 2);
      std::memcpy(&gs, &gds[b].y, 2);
      bad += std::memcmp(qq, &gq[32 * b], 32) != 0 || gd != d || gs != s;
    }
    check(fmt("attention heads %d/%d hd %d splits %d%s", ac.n_head, ac.n_kv, ac.hd, ac.nsplit, ac.window ? " window 512" : ""),
          worst < 5e-5 && bad == 0, fmt("max |err| %.2e (bound 5e-5, |v|<=1), q8_1 blocks differing from its f32: %zu", worst, bad));
  }
}

static void check_embed() {
  std::printf("\n== embedding rows (dequantization, bit-exact) ==\n");
  Rng rng(66);
  for (int type : {Q4_0, Q5_0, Q8_0, Q4_K, Q5_K, Q6_K}) {
    const int K = 1024, vocab = 37;
    const size_t rb = (size_t)K / ref::block_values(type) * ref::block_bytes(type);
    std::vector<uint8_t> t(vocab * rb);
    random_blocks(type, t.data(), t.size() / ref::block_bytes(type), rng, 0.01f);
    std::vector<int> tok = {36, 0, 17};
    Dev<uint8_t> dt(t.size());
    dt.up(t);
    Dev<int> dtok(3);
    dtok.up(tok);
    Dev<float> out(3 * K);
    rbee_embed_rows<<<dim3(K / 256, 3), 256>>>(type, dt.p, (long long)rb, dtok.p, K, 25.3f, out.p, K);
    CK(cudaDeviceSynchronize());
    auto g = out.down();
    size_t bad = 0;
    for (int r = 0; r < 3; ++r)
      for (int e = 0; e < K; ++e) {
        const int qk = ref::block_values(type);
        const float want = ref::dequant(type, &t[tok[r] * rb + (size_t)(e / qk) * ref::block_bytes(type)], e % qk) * 25.3f;
        bad += std::memcmp(&want, &g[(size_t)r * K + e], 4) != 0;
      }
    check(fmt("%s embed_rows", ref::type_name(type)), bad == 0, fmt("%zu mismatches", bad));
  }
}

// ---------------------------------------------------------------------------------------------
// (b) Timings

// Times `launch(stream, i)` captured n times into one graph, replayed; returns µs per launch.
static double time_graph(const std::function<void(cudaStream_t, int)>& launch, int n, int replays = 5) {
  CK(cudaDeviceSynchronize());  // buffers are set up on the legacy stream, which a non-blocking one does not wait for
  cudaStream_t st;
  CK(cudaStreamCreateWithFlags(&st, cudaStreamNonBlocking));
  cudaGraph_t g;
  cudaGraphExec_t ge;
  CK(cudaStreamBeginCapture(st, cudaStreamCaptureModeGlobal));
  for (int i = 0; i < n; ++i) launch(st, i);
  CK(cudaStreamEndCapture(st, &g));
  CK(cudaGraphInstantiate(&ge, g, 0));
  CK(cudaGraphLaunch(ge, st));
  CK(cudaStreamSynchronize(st));
  cudaEvent_t e0, e1;
  CK(cudaEventCreate(&e0));
  CK(cudaEventCreate(&e1));
  std::vector<double> t;
  for (int r = 0; r < replays; ++r) {
    CK(cudaEventRecord(e0, st));
    CK(cudaGraphLaunch(ge, st));
    CK(cudaEventRecord(e1, st));
    CK(cudaEventSynchronize(e1));
    float ms;
    CK(cudaEventElapsedTime(&ms, e0, e1));
    t.push_back(ms * 1000.0 / n);
  }
  std::sort(t.begin(), t.end());
  CK(cudaGraphExecDestroy(ge));
  CK(cudaGraphDestroy(g));
  CK(cudaEventDestroy(e0));
  CK(cudaEventDestroy(e1));
  CK(cudaStreamDestroy(st));
  return t[t.size() / 2];
}

static void report(const std::string& model, const std::string& kernel, const std::string& shape, int batch, double us,
                   double bytes, const std::string& note = "") {
  const double gbs = bytes / (us * 1e-6) / 1e9;
  std::printf("  %-10s %-30s %-34s b=%d %9.2f us %8.1f GB/s %5.1f%% %s\n", model.c_str(), kernel.c_str(), shape.c_str(), batch, us, gbs,
              100.0 * gbs / g_peak_gbs, note.c_str());
  S.timings.push_back(fmt("{\"model\":\"%s\",\"kernel\":\"%s\",\"shape\":\"%s\",\"batch\":%d,\"us\":%.3f,\"bytes\":%.0f,\"gbs\":%.1f,"
                          "\"pct_peak\":%.1f,\"note\":\"%s\"}",
                          model.c_str(), kernel.c_str(), jesc(shape).c_str(), batch, us, bytes, gbs, 100.0 * gbs / g_peak_gbs,
                          jesc(note).c_str()));
}

// Enough copies of a weight that a timing loop cannot run from the 50 MB L2.
struct WeightPool {
  std::vector<uint8_t*> copies;
  size_t bytes = 0;
  WeightPool(int type, size_t bytes_, uint64_t seed, float dscale) : bytes(bytes_) {
    const int n = bytes >= (size_t)128 << 20 ? 1 : (int)std::min<size_t>(64, (((size_t)192 << 20) + bytes - 1) / bytes);
    for (int i = 0; i < n; ++i) {
      uint8_t* p;
      CK(cudaMalloc(&p, bytes + 16));
      fill_words<<<1024, 256>>>((uint32_t*)p, (bytes + 3) / 4, seed + i);
      fix_scales<<<1024, 256>>>(p, bytes / block_bytes(type), type, dscale, seed + i);
      copies.push_back(p);
    }
    CK(cudaDeviceSynchronize());
  }
  uint8_t* at(int i) const { return copies[i % copies.size()]; }
  ~WeightPool() {
    for (auto p : copies) cudaFree(p);
  }
};

struct Act {  // q8_1 planes and f32 buffers for up to 8 rows of width K
  Dev<int8_t> q;
  Dev<half2> ds;
  Dev<float> f;
  int K;
  explicit Act(int K_) : q((size_t)8 * K_), ds((size_t)8 * K_ / 32), f((size_t)8 * K_), K(K_) {
    fill_float<<<64, 256>>>(f.p, f.n, K_, 0.0f, 1.0f);
    rbee_quantize_q8_1<<<dim3((K_ / 32 + 7) / 8, 8), 256>>>(f.p, K_, K_, q.p, K_, ds.p, K_ / 32);
  }
};

static std::map<std::string, int> g_best_wpr;  // "type/rows/K/batch" -> fastest warps per row

static double time_mmvq(const std::string& model, const std::string& name, int type, const std::vector<int>& segs, int K, int batch,
                        bool residual, bool head) {
  const size_t rb = (size_t)K / ref::block_values(type) * ref::block_bytes(type);
  int rows = 0;
  for (int r : segs) rows += r;
  WeightPool pool(type, rows * rb, 1000 + rows + K, 1.0f / (typical(type) * std::sqrt((float)K)));
  Act x(K);
  Dev<float> out((size_t)8 * rows);
  const int maxgrid = 4 * g_sms * 8;
  Dev<float> pv((size_t)8 * maxgrid);
  Dev<int> pi((size_t)8 * maxgrid);
  double best = 1e30;
  int best_w = 1;
  std::string all;
  for (int wpr : {1, 2, 4}) {
    const double us = time_graph(
        [&](cudaStream_t st, int i) {
          MmvqArgs a{};
          int off = 0;
          for (size_t s = 0; s < segs.size(); ++s) {
            a.seg[s] = MmvqSeg{pool.at(i) + off * rb, out.p + off, residual ? out.p + off : nullptr, segs[s], rows, rows, 0};
            off += segs[s];
          }
          a.nseg = (int)segs.size();
          a.xq = x.q.p;
          a.xds = x.ds.p;
          a.ldxq = K;
          a.ldxds = K / 32;
          a.w_stride = (long long)rb;
          a.K = K;
          a.warps_per_row = wpr;
          if (head) {
            a.argmax_val = pv.p;
            a.argmax_idx = pi.p;
          }
          launch_mmvq(st, type, batch, a, head ? head_grid(rows, wpr) : 0);
        },
        40);
    all += fmt("w%d=%.1f ", wpr, us);
    if (us < best) {
      best = us;
      best_w = wpr;
    }
  }
  g_best_wpr[fmt("%d/%d/%d/%d", type, rows, K, batch)] = best_w;
  std::string shape = fmt("%s %dx%d", ref::type_name(type), rows, K);
  if (segs.size() > 1) shape += fmt(" (%zu segs)", segs.size());
  const double bytes = rows * (double)rb + batch * (K * 1.0 + K / 32 * 4.0) + batch * rows * 4.0 * (residual ? 2 : 1);
  report(model, name, shape, batch, best, bytes, fmt("best of warps/row: %s", all.c_str()));
  return best;
}

static int wpr_for(int type, int rows, int K, int batch) {
  auto it = g_best_wpr.find(fmt("%d/%d/%d/%d", type, rows, K, batch));
  return it != g_best_wpr.end() ? it->second : default_wpr(rows, K, type);
}

static void time_glu(const std::string& model, int type, int F, int K, int batch, int act) {
  const size_t rb = (size_t)K / ref::block_values(type) * ref::block_bytes(type);
  WeightPool pool(type, 2 * F * rb, 2000 + F + K, 1.0f / (typical(type) * std::sqrt((float)K)));
  Act x(K);
  Dev<int8_t> yq((size_t)8 * F);
  Dev<half2> yds((size_t)8 * F / 32);
  const double us = time_graph(
      [&](cudaStream_t st, int i) {
        GluArgs a{};
        a.w_gate = pool.at(i);
        a.w_up = pool.at(i) + F * rb;
        a.xq = x.q.p;
        a.xds = x.ds.p;
        a.yq = yq.p;
        a.yds = yds.p;
        a.w_stride = (long long)rb;
        a.K = K;
        a.F = F;
        a.ldxq = K;
        a.ldxds = K / 32;
        a.ldyq = F;
        a.ldyds = F / 32;
        a.act = act;
        launch_glu(st, type, batch, a);
      },
      40);
  report(model, act ? "gate+up gelu -> q8_1" : "gate+up silu -> q8_1", fmt("%s 2x%dx%d", ref::type_name(type), F, K), batch, us,
         2.0 * F * rb + batch * (K + F) * 1.0);
}

static void time_small(const std::string& model, int hidden, int n_head, int n_kv, int hd, int batch, bool qk_norm) {
  Dev<float> x((size_t)8 * hidden), w(hidden);
  fill_float<<<64, 256>>>(x.p, x.n, 1, 0.0f, 1.0f);
  fill_float<<<64, 256>>>(w.p, w.n, 2, 1.0f, 0.1f);
  Dev<int8_t> q((size_t)8 * hidden);
  Dev<half2> ds((size_t)8 * hidden / 32);
  double us = time_graph(
      [&](cudaStream_t st, int) {
        NormArgs a{};
        a.x = x.p;
        a.w = w.p;
        a.yq = q.p;
        a.yds = ds.p;
        a.ldx = hidden;
        a.ldyq = hidden;
        a.ldyds = hidden / 32;
        a.K = hidden;
        a.eps = 1e-6f;
        launch_norm(st, batch, a);
      },
      100);
  report(model, "rmsnorm -> q8_1", fmt("%d", hidden), batch, us, batch * hidden * 5.0 + hidden * 4.0);

  const int cap = 4096, slots = 8;
  const size_t ss = (size_t)n_kv * cap * hd;
  Dev<float> qkv((size_t)8 * (n_head + 2 * n_kv) * hd), inv(hd / 2), nw(hd);
  fill_float<<<64, 256>>>(qkv.p, qkv.n, 3, 0.0f, 1.0f);
  fill_float<<<1, 256>>>(inv.p, inv.n, 4, 0.5f, 0.4f);
  fill_float<<<1, 256>>>(nw.p, nw.n, 5, 1.0f, 0.1f);
  Dev<half> kc(slots * ss), vc(slots * ss);
  fill_half<<<1024, 256>>>(kc.p, kc.n, kc.n, 6, 1.0f);
  fill_half<<<1024, 256>>>(vc.p, vc.n, vc.n, 7, 1.0f);
  Dev<int> pos(8), slot(8);
  std::vector<int> sl(8);
  for (int i = 0; i < 8; ++i) sl[i] = i;
  slot.up(sl);
  const int ld = (n_head + 2 * n_kv) * hd;
  us = time_graph(
      [&](cudaStream_t st, int) {
        RopeArgs a{};
        a.q = qkv.p;
        a.k = qkv.p + n_head * hd;
        a.v = qkv.p + (n_head + n_kv) * hd;
        a.q_out = qkv.p;
        a.k_cache = kc.p;
        a.v_cache = vc.p;
        a.pos = pos.p;
        a.slot = slot.p;
        a.inv_freq = inv.p;
        a.q_norm = qk_norm ? nw.p : nullptr;
        a.k_norm = qk_norm ? nw.p : nullptr;
        a.slot_stride = (long long)ss;
        a.ldq = a.ldk = a.ldv = a.ldqo = ld;
        a.n_head = n_head;
        a.n_kv = n_kv;
        a.hd = hd;
        a.n_rot = hd;
        a.cap = cap;
        a.neox = 1;
        a.freq_scale = 1.0f;
        a.eps = 1e-6f;
        launch_rope(st, batch, a);
      },
      100);
  report(model, qk_norm ? "rope+kv write (+q/k norm)" : "rope+kv write", fmt("%d/%d heads hd %d", n_head, n_kv, hd), batch, us,
         batch * (n_head + 2 * n_kv) * hd * 4.0 + batch * (n_head * hd * 4.0 + 2 * n_kv * hd * 2.0));

  for (int ctx : {128, 2048}) {
    std::vector<int> p(8, ctx - 1);
    pos.up(p);
    double best = 1e30;
    int best_s = 0;
    std::string all;
    for (int nsplit : {4, 8, 16, 32, 64}) {
      if (nsplit * 16 > ctx && nsplit > 4) continue;
      Dev<float> po((size_t)8 * n_head * nsplit * hd);
      Dev<float2> pml((size_t)8 * n_head * nsplit);
      Dev<int8_t> yq((size_t)8 * n_head * hd);
      Dev<half2> yds((size_t)8 * n_head * hd / 32);
      const double t = time_graph(
          [&](cudaStream_t st, int) {
            AttnArgs a{};
            a.q = qkv.p;
            a.k_cache = kc.p;
            a.v_cache = vc.p;
            a.pos = pos.p;
            a.slot = slot.p;
            a.part_o = po.p;
            a.part_ml = pml.p;
            a.slot_stride = (long long)ss;
            a.ldq = ld;
            a.n_head = n_head;
            a.n_kv = n_kv;
            a.cap = cap;
            a.nsplit = nsplit;
            a.scale = 0.08f;
            AttnReduceArgs r{};
            r.part_o = po.p;
            r.part_ml = pml.p;
            r.yq = yq.p;
            r.yds = yds.p;
            r.n_head = n_head;
            r.nsplit = nsplit;
            r.ldyq = n_head * hd;
            r.ldyds = n_head * hd / 32;
            launch_attn(st, batch, hd, a, r);
          },
          50);
      all += fmt("s%d=%.1f ", nsplit, t);
      if (t < best) {
        best = t;
        best_s = nsplit;
      }
    }
    g_best_wpr[fmt("attn/%d/%d/%d/%d", hd, n_kv, batch, ctx)] = best_s;
    report(model, "attention split+reduce", fmt("ctx %d, %d/%d heads hd %d", ctx, n_head, n_kv, hd), batch, best,
           batch * (2.0 * n_kv * ctx * hd * 2 + n_head * hd * 4.0), fmt("2 kernels; splits: %s", all.c_str()));
  }
}

static void timings(bool quick) {
  std::printf("\n== kernel timings (each captured 40-100x in a graph; weights rotated past the L2) ==\n");
  std::printf("  GB/s = bytes read+written / time; %% of %.0f GB/s\n", g_peak_gbs);
  for (int b : {1, 8}) {
    if (quick && b == 8) break;
    const std::string m = "llama8b";
    time_small(m, 4096, 32, 8, 128, b, false);
    time_mmvq(m, "qkv (fused)", Q4_K, {4096, 1024, 1024}, 4096, b, false, false);
    time_mmvq(m, "v (when Q6_K)", Q6_K, {1024}, 4096, b, false, false);
    time_mmvq(m, "o-proj + residual", Q4_K, {4096}, 4096, b, true, false);
    time_glu(m, Q4_K, 14336, 4096, b, 0);
    time_mmvq(m, "down + residual", Q4_K, {4096}, 14336, b, true, false);
    time_mmvq(m, "down + residual", Q6_K, {4096}, 14336, b, true, false);
    time_mmvq(m, "head + argmax partials", Q6_K, {128256}, 4096, b, false, true);
    const std::string g = "gemma270m";
    time_small(g, 640, 4, 1, 256, b, true);
    time_mmvq(g, "qk (fused)", Q5_0, {1024, 256}, 640, b, false, false);
    time_mmvq(g, "v", Q8_0, {256}, 640, b, false, false);
    time_mmvq(g, "o-proj", Q4_K, {640}, 1024, b, false, false);
    time_glu(g, Q5_0, 2048, 640, b, 1);
    time_mmvq(g, "down", Q4_K, {640}, 2048, b, false, false);
    time_mmvq(g, "down", Q6_K, {640}, 2048, b, false, false);
    time_mmvq(g, "head (tied) + argmax", Q8_0, {262144}, 640, b, false, true);
  }
}

// ---------------------------------------------------------------------------------------------
// The GEMM prefill (prefill.cu): dequantization to f32 / bf16 (bit-exact against the CPU's block
// decoding), and what a 512-token chunk of the 8B shape costs in dequantization and cuBLAS GEMMs

// The per-element dequantization the prefill used before 2026-12-06 (one thread a value, every
// scale decoded again per value): kept here only as the timing baseline.
__global__ void old_dequant_f32(int type, const uint8_t* w, long long row_bytes, int K, float* out) {
  const int e = blockIdx.x * blockDim.x + threadIdx.x, r = blockIdx.y;
  if (e >= K) return;
  const uint8_t* row = w + (size_t)r * row_bytes;
  float v = 0.0f;
  switch (type) {
    case Q4_K: v = TQ4_K::value(row + (size_t)(e / 256) * TQ4_K::BYTES, e % 256); break;
    case Q6_K: v = TQ6_K::value(row + (size_t)(e / 256) * TQ6_K::BYTES, e % 256); break;
    default: break;
  }
  out[(size_t)r * K + e] = v;
}

static uint16_t bf16_bits(float f) {  // round to nearest even, as __float2bfloat16_rn (finite f)
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return (uint16_t)((u + 0x7FFFu + ((u >> 16) & 1u)) >> 16);
}

static void check_dequant() {
  std::printf("\n== prefill dequantization (bit-exact: f32 = the block's value, bf16 = it rounded to nearest even) ==\n");
  Rng rng(77);
  for (int type : {Q4_0, Q5_0, Q8_0, Q4_K, Q5_K, Q6_K}) {
    const int K = 2304, rows = 41;  // K not a multiple of the 2048 values a block of threads takes
    const size_t rb = (size_t)K / ref::block_values(type) * ref::block_bytes(type);
    const size_t row_stride = (rb + 15) / 16 * 16;  // rows 16-byte aligned, as uploaded GGUF tensors are
    std::vector<uint8_t> w(rows * row_stride);
    for (int r = 0; r < rows; ++r) random_blocks(type, &w[r * row_stride], rb / ref::block_bytes(type), rng, 0.02f);
    Dev<uint8_t> dw(w.size());
    dw.up(w);
    Dev<float> o32((size_t)rows * K);
    Dev<__nv_bfloat16> o16((size_t)rows * K);
    const dim3 grid((K + 2047) / 2048, rows);
    rbee_dequant_f32<<<grid, 256>>>(type, dw.p, (long long)row_stride, K, o32.p);
    rbee_dequant_bf16<<<grid, 256>>>(type, dw.p, (long long)row_stride, K, o16.p);
    CK(cudaDeviceSynchronize());
    auto g32 = o32.down();
    auto g16 = o16.down();
    size_t bad32 = 0, bad16 = 0;
    const int qk = ref::block_values(type);
    for (int r = 0; r < rows; ++r)
      for (int e = 0; e < K; ++e) {
        const float want = ref::dequant(type, &w[r * row_stride + (size_t)(e / qk) * ref::block_bytes(type)], e % qk);
        const size_t i = (size_t)r * K + e;
        bad32 += std::memcmp(&want, &g32[i], 4) != 0;
        uint16_t got16;
        std::memcpy(&got16, &g16[i], 2);
        bad16 += got16 != bf16_bits(want);
      }
    check(fmt("%s dequant_f32", ref::type_name(type)), bad32 == 0, fmt("%zu of %d mismatches", bad32, rows * K));
    check(fmt("%s dequant_bf16", ref::type_name(type)), bad16 == 0, fmt("%zu of %d mismatches", bad16, rows * K));
  }
  // f32 -> bf16 activations
  {
    std::vector<float> x(5000);
    for (size_t i = 0; i < x.size(); ++i) x[i] = (rng.uni() - 0.5f) * std::ldexp(1.0f, (int)(i % 40) - 20);
    Dev<float> dx(x.size());
    dx.up(x);
    Dev<__nv_bfloat16> dy(x.size());
    rbee_f32_to_bf16<<<(x.size() + 255) / 256, 256>>>(dx.p, (long long)x.size(), dy.p);
    CK(cudaDeviceSynchronize());
    auto y = dy.down();
    size_t bad = 0;
    for (size_t i = 0; i < x.size(); ++i) {
      uint16_t got;
      std::memcpy(&got, &y[i], 2);
      bad += got != bf16_bits(x[i]);
    }
    check("f32_to_bf16", bad == 0, fmt("%zu of %zu mismatches", bad, x.size()));
  }
}

// Times `fn(stream)` eagerly (cuBLAS calls are not all capturable with every workspace), median of 5.
static double time_eager(const std::function<void(cudaStream_t)>& fn, int reps = 5) {
  cudaStream_t st;
  CK(cudaStreamCreateWithFlags(&st, cudaStreamNonBlocking));
  cudaEvent_t e0, e1;
  CK(cudaEventCreate(&e0));
  CK(cudaEventCreate(&e1));
  fn(st);  // warm-up (cuBLAS picks its kernels)
  CK(cudaStreamSynchronize(st));
  std::vector<double> t;
  for (int r = 0; r < reps; ++r) {
    CK(cudaEventRecord(e0, st));
    fn(st);
    CK(cudaEventRecord(e1, st));
    CK(cudaEventSynchronize(e1));
    float ms;
    CK(cudaEventElapsedTime(&ms, e0, e1));
    t.push_back(ms * 1000.0);
  }
  std::sort(t.begin(), t.end());
  CK(cudaEventDestroy(e0));
  CK(cudaEventDestroy(e1));
  CK(cudaStreamDestroy(st));
  return t[t.size() / 2];
}

#define CB(x)                                                                 \
  do {                                                                        \
    cublasStatus_t s_ = (x);                                                  \
    if (s_ != CUBLAS_STATUS_SUCCESS) {                                        \
      std::fprintf(stderr, "cuBLAS error %d at %s:%d\n", (int)s_, __FILE__, __LINE__); \
      std::exit(2);                                                           \
    }                                                                         \
  } while (0)

static void time_prefill() {
  std::printf("\n== prefill of one 512-token chunk, 8B shape (random weights): dequantization and cuBLAS GEMMs per layer ==\n");
  const int T = 512;
  struct Group { const char* name; int type, rows, K; };
  // Q4_K_M: Q6_K for V and for down in half the layers; both downs timed.
  const Group groups[] = {{"qkv", Q4_K, 6144, 4096}, {"o", Q4_K, 4096, 4096}, {"gate+up", Q4_K, 28672, 4096},
                          {"down", Q4_K, 4096, 14336}, {"down (Q6_K)", Q6_K, 4096, 14336}};
  cublasHandle_t h;
  CB(cublasCreate(&h));
  size_t max_elems = 0;
  for (auto& g : groups) max_elems = std::max(max_elems, (size_t)g.rows * g.K);
  Dev<float> w32(max_elems);
  Dev<__nv_bfloat16> w16(max_elems);
  Dev<float> x32((size_t)T * 14336), out((size_t)T * 28672);
  Dev<__nv_bfloat16> x16((size_t)T * 14336);
  fill_float<<<256, 256>>>(x32.p, x32.n, 14336, 0.0f, 1.0f);
  rbee_f32_to_bf16<<<(x32.n + 255) / 256, 256>>>(x32.p, (long long)x32.n, x16.p);
  double per_layer[4] = {0, 0, 0, 0};  // old dequant + TF32, new f32 dequant + TF32, bf16 dequant + bf16, max(bf16 dequant, gemm)
  for (const auto& g : groups) {
    const size_t bytes = (size_t)g.rows * g.K / 256 * block_bytes(g.type);
    WeightPool pool(g.type, bytes, 4242 + g.rows, 0.002f);
    const long long rb = (long long)(g.K / 256 * block_bytes(g.type));
    const dim3 grid_old((g.K + 255) / 256, g.rows), grid_new((g.K + 2047) / 2048, g.rows);
    const double t_old = time_eager([&](cudaStream_t st) { old_dequant_f32<<<grid_old, 256, 0, st>>>(g.type, pool.at(0), rb, g.K, w32.p); });
    const double t_f32 = time_eager([&](cudaStream_t st) { rbee_dequant_f32<<<grid_new, 256, 0, st>>>(g.type, pool.at(0), rb, g.K, w32.p); });
    const double t_bf16 = time_eager([&](cudaStream_t st) { rbee_dequant_bf16<<<grid_new, 256, 0, st>>>(g.type, pool.at(0), rb, g.K, w16.p); });
    const float alpha = 1.0f, beta = 0.0f;
    const double t_tf32 = time_eager([&](cudaStream_t st) {
      CB(cublasSetStream(h, st));
      CB(cublasGemmEx(h, CUBLAS_OP_T, CUBLAS_OP_N, g.rows, T, g.K, &alpha, w32.p, CUDA_R_32F, g.K, x32.p, CUDA_R_32F, g.K, &beta, out.p,
                      CUDA_R_32F, g.rows, CUBLAS_COMPUTE_32F_FAST_TF32, CUBLAS_GEMM_DEFAULT));
    });
    const double t_gbf16 = time_eager([&](cudaStream_t st) {
      CB(cublasSetStream(h, st));
      CB(cublasGemmEx(h, CUBLAS_OP_T, CUBLAS_OP_N, g.rows, T, g.K, &alpha, w16.p, CUDA_R_16BF, g.K, x16.p, CUDA_R_16BF, g.K, &beta, out.p,
                      CUDA_R_32F, g.rows, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
    });
    const double flops = 2.0 * g.rows * (double)g.K * T;
    const std::string shape = fmt("%s %dx%d", ref::type_name(g.type), g.rows, g.K);
    report("llama8b", fmt("prefill dequant f32, old (%s)", g.name), shape, T, t_old, bytes + 4.0 * g.rows * g.K);
    report("llama8b", fmt("prefill dequant f32 (%s)", g.name), shape, T, t_f32, bytes + 4.0 * g.rows * g.K);
    report("llama8b", fmt("prefill dequant bf16 (%s)", g.name), shape, T, t_bf16, bytes + 2.0 * g.rows * g.K);
    report("llama8b", fmt("prefill GEMM TF32 (%s)", g.name), shape, T, t_tf32, 4.0 * g.rows * g.K, fmt("%.0f TFLOP/s", flops / t_tf32 / 1e6));
    report("llama8b", fmt("prefill GEMM bf16 (%s)", g.name), shape, T, t_gbf16, 2.0 * g.rows * g.K, fmt("%.0f TFLOP/s", flops / t_gbf16 / 1e6));
    // Q4_K_M's layers: half with a Q4_K down, half with a Q6_K one.
    const double share = std::string(g.name).rfind("down", 0) == 0 ? 0.5 : 1.0;
    per_layer[0] += share * (t_old + t_tf32);
    per_layer[1] += share * (t_f32 + t_tf32);
    per_layer[2] += share * (t_bf16 + t_gbf16);
    per_layer[3] += share * std::max(t_bf16, t_gbf16);
  }
  CB(cublasDestroy(h));
  const char* what[4] = {"old f32 dequant + TF32 GEMM, in turn", "f32 dequant + TF32 GEMM, in turn", "bf16 dequant + bf16 GEMM, in turn",
                         "bf16, dequant hidden under the GEMM (bound)"};
  for (int i = 0; i < 4; ++i) {
    const double chunk_ms = 32 * per_layer[i] / 1000.0;
    std::printf("  products of one layer: %-46s %8.1f us; x32 layers = %6.1f ms a 512-token chunk (%.0f tok/s before norms, attention, head)\n",
                what[i], per_layer[i], chunk_ms, T / (chunk_ms / 1000.0));
    S.timings.push_back(fmt("{\"model\":\"llama8b\",\"kernel\":\"prefill products per layer: %s\",\"shape\":\"T=512\",\"batch\":%d,\"us\":%.3f,"
                            "\"bytes\":0,\"gbs\":0,\"pct_peak\":0,\"note\":\"x32 layers %.1f ms\"}",
                            what[i], T, per_layer[i], chunk_ms));
  }
}

// ---------------------------------------------------------------------------------------------
// MMQ (mmq.cu): batches of 9..32 columns, each column bit-identical to rbee_mmvq_<type>_1 alone

typedef void (*MmqFn)(MmvqArgs);
static MmqFn mmq_fn(int type, int w, int nc) {
#define RBEE_MMQ_PICK(name)                                                                  \
  return w == 2 ? rbee_mmq_##name##_w2_c16 : nc == 32 ? rbee_mmq_##name##_w1_c32 : rbee_mmq_##name##_w1_c16;
  if (type == Q4_K) { RBEE_MMQ_PICK(q4_k) }
  if (type == Q5_K) { RBEE_MMQ_PICK(q5_k) }
  RBEE_MMQ_PICK(q6_k)
#undef RBEE_MMQ_PICK
}
// Columns per block: 32 with one warp per row, 16 with two (the partial sums fill the registers).
static int mmq_cols(int w, int ncols) { return w == 1 && ncols > 16 ? 32 : 16; }
static void launch_mmq(cudaStream_t st, int type, int ncols, MmvqArgs a, int grid_cap = 0) {
  const int total = a.seg[0].rows + (a.nseg > 1 ? a.seg[1].rows : 0) + (a.nseg > 2 ? a.seg[2].rows : 0);
  const int nc = mmq_cols(a.warps_per_row, ncols);
  int grid = total / 16;
  if (grid_cap > 0) grid = std::min(grid, grid_cap);
  if (a.argmax_val) a.ld_argmax = grid;
  a.ncols = ncols;
  mmq_fn(type, a.warps_per_row, nc)<<<dim3(grid, (ncols + nc - 1) / nc), 256, 0, st>>>(a);
}

static void check_mmq() {
  std::printf("\n== MMQ (tensor cores): every column bit-identical to the 1-column mat-vec ==\n");
  Rng rng(33);
  for (int type : {Q4_K, Q5_K, Q6_K}) {
    const int K = 2560, rows = 160, ncols = 27;  // 10 blocks: some warps' slices are empty at W=2
    const size_t rb = (size_t)K / 256 * ref::block_bytes(type);
    std::vector<uint8_t> w(rows * rb);
    random_blocks(type, w.data(), w.size() / ref::block_bytes(type), rng, 0.01f);
    auto xf = random_floats((size_t)ncols * K, rng);
    auto xq = ref::quantize_rows(xf.data(), ncols, K);
    Dev<uint8_t> dw(w.size());
    dw.up(w);
    DQ8 dx;
    dx.from(xq);
    for (int wpr : {1, 2}) {
      // Alone: each column through rbee_mmvq_<type>_1.
      std::vector<float> alone((size_t)ncols * rows);
      for (int c = 0; c < ncols; ++c) {
        Dev<float> out(rows);
        MmvqArgs a = product_args(dw.p, out.p, rows, dx, c, rb, K, wpr);
        launch_mmvq(0, type, 1, a);
        CK(cudaDeviceSynchronize());
        auto g = out.down();
        std::memcpy(&alone[(size_t)c * rows], g.data(), rows * 4);
      }
      for (int ncb : {16, 32}) {
        if (wpr == 2 && ncb == 32) continue;
        for (int cap : {0, 3}) {  // every tile its own block, or 3 blocks looping over the tiles
          Dev<float> out((size_t)ncols * rows);
          MmvqArgs a = product_args(dw.p, out.p, rows, dx, 0, rb, K, wpr);
          a.ncols = ncols;
          int grid = rows / 16;
          if (cap) grid = cap;
          mmq_fn(type, wpr, ncb)<<<dim3(grid, (ncols + ncb - 1) / ncb), 256>>>(a);
          CK(cudaDeviceSynchronize());
          auto g = out.down();
          size_t diff = 0;
          for (int c = 0; c < ncols; ++c) diff += std::memcmp(&g[(size_t)c * rows], &alone[(size_t)c * rows], rows * 4) != 0;
          check(fmt("%s mmq w%d c%d%s: %d columns == mmvq alone", ref::type_name(type), wpr, ncb, cap ? " (3 blocks loop)" : "", ncols),
                diff == 0, fmt("%zu column(s) differ", diff));
        }
      }
    }
  }
  // Three segments + residual; the head (softcap, argmax partials, final pick); gate+up + GLU.
  {
    const int type = Q4_K, K = 1024, r0 = 64, r1 = 32, r2 = 48, ncols = 20;
    const size_t rb = (size_t)K / 256 * 144, stride = rb + 144;
    std::vector<uint8_t> w((size_t)(r0 + r1 + r2) * stride);
    random_blocks(type, w.data(), w.size() / 144, rng, 0.01f);
    auto xf = random_floats((size_t)ncols * K, rng);
    auto xq = ref::quantize_rows(xf.data(), ncols, K);
    auto res = random_floats((size_t)ncols * r1, rng);
    Dev<uint8_t> dw(w.size());
    dw.up(w);
    DQ8 dx;
    dx.from(xq);
    auto run = [&](bool mmq, int c_first, int nc, std::vector<float>& g0, std::vector<float>& g1, std::vector<float>& g2) {
      Dev<float> o0((size_t)nc * r0), o1((size_t)nc * r1), o2((size_t)nc * r2);
      o1.up(std::vector<float>(res.begin() + (size_t)c_first * r1, res.begin() + (size_t)(c_first + nc) * r1));
      MmvqArgs a = product_args(dw.p, o0.p, r0, dx, c_first, stride, K, 2);
      a.seg[1] = MmvqSeg{dw.p + r0 * stride, o1.p, o1.p, r1, r1, r1, 0};
      a.seg[2] = MmvqSeg{dw.p + (r0 + r1) * stride, o2.p, nullptr, r2, r2, 0, 0};
      a.nseg = 3;
      if (mmq) launch_mmq(0, type, nc, a);
      else launch_mmvq(0, type, nc, a);
      CK(cudaDeviceSynchronize());
      g0 = o0.down();
      g1 = o1.down();
      g2 = o2.down();
    };
    std::vector<float> m0, m1, m2;
    run(true, 0, ncols, m0, m1, m2);
    size_t diff = 0;
    for (int c = 0; c < ncols; ++c) {
      std::vector<float> a0, a1, a2;
      run(false, c, 1, a0, a1, a2);
      diff += std::memcmp(a0.data(), &m0[(size_t)c * r0], r0 * 4) != 0;
      diff += std::memcmp(a1.data(), &m1[(size_t)c * r1], r1 * 4) != 0;
      diff += std::memcmp(a2.data(), &m2[(size_t)c * r2], r2 * 4) != 0;
    }
    check("q4_k mmq, 3 segments + residual + padded stride, 20 columns == alone", diff == 0, fmt("%zu segment column(s) differ", diff));
  }
  {
    const int type = Q6_K, K = 1024, rows = 4000, ncols = 24, cap = 37;
    const size_t rb = (size_t)K / 256 * 210;
    std::vector<uint8_t> w(rows * rb);
    random_blocks(type, w.data(), w.size() / 210, rng, 0.01f);
    auto xf = random_floats((size_t)ncols * K, rng);
    auto xq = ref::quantize_rows(xf.data(), ncols, K);
    Dev<uint8_t> dw(w.size());
    dw.up(w);
    DQ8 dx;
    dx.from(xq);
    const int maxgrid = 4 * g_sms * 8;
    Dev<float> logits((size_t)ncols * rows), pv((size_t)ncols * maxgrid);
    Dev<int> pi((size_t)ncols * maxgrid), tok(ncols);
    MmvqArgs a = product_args(dw.p, logits.p, rows, dx, 0, rb, K, 1);
    a.argmax_val = pv.p;
    a.argmax_idx = pi.p;
    a.softcap = 30.0f;
    launch_mmq(0, type, ncols, a, cap);
    rbee_argmax_final<<<ncols, 256>>>(pv.p, pi.p, cap, cap, tok.p, nullptr, nullptr);
    CK(cudaDeviceSynchronize());
    auto gl = logits.down();
    auto gt = tok.down();
    size_t diff = 0, tdiff = 0;
    for (int c = 0; c < ncols; ++c) {
      Dev<float> l1(rows), v1(maxgrid);
      Dev<int> i1(maxgrid), t1(1);
      MmvqArgs b = a;
      b.seg[0] = MmvqSeg{dw.p, l1.p, nullptr, rows, rows, 0, 0};
      b.xq = dx.qs.p + (size_t)c * dx.ld;
      b.xds = dx.ds.p + (size_t)c * dx.ldds;
      b.argmax_val = v1.p;
      b.argmax_idx = i1.p;
      const int grid = head_grid(rows, 1);
      launch_mmvq(0, type, 1, b, grid);
      rbee_argmax_final<<<1, 256>>>(v1.p, i1.p, grid, grid, t1.p, nullptr, nullptr);
      CK(cudaDeviceSynchronize());
      diff += std::memcmp(l1.down().data(), &gl[(size_t)c * rows], rows * 4) != 0;
      tdiff += t1.down()[0] != gt[c];
    }
    check("q6_k mmq head: softcap logits and greedy tokens == alone (24 columns, 37 blocks)", diff + tdiff == 0,
          fmt("%zu logit column(s), %zu token(s) differ", diff, tdiff));
  }
  for (int type : {Q4_K, Q6_K}) {
    const int K = 2048, F = 512, ncols = 32;
    const size_t rb = (size_t)K / 256 * ref::block_bytes(type);
    std::vector<uint8_t> w((size_t)2 * F * rb);
    random_blocks(type, w.data(), w.size() / ref::block_bytes(type), rng, 0.01f);
    auto xf = random_floats((size_t)ncols * K, rng);
    auto xq = ref::quantize_rows(xf.data(), ncols, K);
    Dev<uint8_t> dw(w.size());
    dw.up(w);
    DQ8 dx;
    dx.from(xq);
    for (int act : {0, 1}) {
      Dev<float> g((size_t)ncols * F), u((size_t)ncols * F);
      Dev<int8_t> yq((size_t)ncols * F);
      Dev<half2> yds((size_t)ncols * F / 32);
      MmvqArgs a = product_args(dw.p, g.p, F, dx, 0, rb, K, 1);
      a.seg[1] = MmvqSeg{dw.p + F * rb, u.p, nullptr, F, F, 0, 0};
      a.nseg = 2;
      launch_mmq(0, type, ncols, a);
      GluEpilogueArgs e{g.p, u.p, yq.p, yds.p, nullptr, F, F, F / 32, 0, act, 0};
      rbee_glu_q8_1<<<dim3(F / 32, ncols), 32>>>(e);
      CK(cudaDeviceSynchronize());
      auto gq = yq.down();
      auto gds = yds.down();
      size_t diff = 0;
      for (int c = 0; c < ncols; ++c) {
        Dev<int8_t> q1(F);
        Dev<half2> d1(F / 32);
        GluArgs ga{};
        ga.w_gate = dw.p;
        ga.w_up = dw.p + F * rb;
        ga.xq = dx.qs.p + (size_t)c * dx.ld;
        ga.xds = dx.ds.p + (size_t)c * dx.ldds;
        ga.yq = q1.p;
        ga.yds = d1.p;
        ga.w_stride = (long long)rb;
        ga.K = K;
        ga.F = F;
        ga.ldxq = dx.ld;
        ga.ldxds = dx.ldds;
        ga.ldyq = F;
        ga.ldyds = F / 32;
        ga.act = act;
        launch_glu(0, type, 1, ga);
        CK(cudaDeviceSynchronize());
        diff += std::memcmp(q1.down().data(), &gq[(size_t)c * F], F) != 0;
        diff += std::memcmp(d1.down().data(), &gds[(size_t)c * F / 32], F / 32 * 4) != 0;
      }
      check(fmt("%s mmq gate+up (2 segments) + glu_q8_1 %s == fused glu alone, 32 columns", ref::type_name(type), act ? "gelu" : "silu"),
            diff == 0, fmt("%zu column plane(s) differ", diff));
    }
  }
}

// One 8B-shaped product at `batch` columns: MMQ against the mat-vec kernels in 8-column groups.
static void time_mmq_case(const std::string& name, int type, const std::vector<int>& segs, int K, int batch, bool residual, bool head,
                          int wpr) {
  const size_t rb = (size_t)K / 256 * ref::block_bytes(type);
  int rows = 0;
  for (int r : segs) rows += r;
  WeightPool pool(type, rows * rb, 3000 + rows + K, 1.0f / (typical(type) * std::sqrt((float)K)));
  Dev<float> xf((size_t)batch * K);
  Dev<int8_t> xq((size_t)batch * K);
  Dev<half2> xds((size_t)batch * K / 32);
  fill_float<<<64, 256>>>(xf.p, xf.n, K, 0.0f, 1.0f);
  rbee_quantize_q8_1<<<dim3((K / 32 + 7) / 8, batch), 256>>>(xf.p, K, K, xq.p, K, xds.p, K / 32);
  Dev<float> out((size_t)batch * rows);
  const int maxgrid = 4 * g_sms * 8;
  Dev<float> pv((size_t)batch * maxgrid);
  Dev<int> pi((size_t)batch * maxgrid);
  auto args = [&](int i, int c0) {
    MmvqArgs a{};
    int off = 0;
    for (size_t s = 0; s < segs.size(); ++s) {
      float* o = out.p + (size_t)c0 * rows + off;
      a.seg[s] = MmvqSeg{pool.at(i) + off * rb, o, residual ? o : nullptr, segs[s], rows, rows, 0};
      off += segs[s];
    }
    a.nseg = (int)segs.size();
    a.xq = xq.p + (size_t)c0 * K;
    a.xds = xds.p + (size_t)c0 * K / 32;
    a.ldxq = K;
    a.ldxds = K / 32;
    a.w_stride = (long long)rb;
    a.K = K;
    a.warps_per_row = wpr;
    if (head) {
      a.argmax_val = pv.p + (size_t)c0 * maxgrid;
      a.argmax_idx = pi.p + (size_t)c0 * maxgrid;
    }
    return a;
  };
  const double t_mmvq = time_graph(
      [&](cudaStream_t st, int i) {
        for (int c0 = 0; c0 < batch; c0 += 8) launch_mmvq(st, type, std::min(8, batch - c0), args(i, c0), head ? head_grid(rows, wpr) : 0);
      },
      20);
  const double t_mmq = time_graph([&](cudaStream_t st, int i) { launch_mmq(st, type, batch, args(i, 0), head ? maxgrid : 0); }, 20);
  std::string alt;
  if (wpr == 1 && batch > 16) {  // the 16-column kernel twice (2 blocks an SM) against the 32-column one (1)
    const double t16 = time_graph(
        [&](cudaStream_t st, int i) {
          MmvqArgs a = args(i, 0);
          const int total = rows;
          int grid = total / 16;
          if (head) grid = std::min(grid, maxgrid);
          if (a.argmax_val) a.ld_argmax = grid;
          a.ncols = batch;
          mmq_fn(type, 1, 16)<<<dim3(grid, (batch + 15) / 16), 256, 0, st>>>(a);
        },
        20);
    alt = fmt("; c16 kernel %.1f us", t16);
  }
  std::string shape = fmt("%s %dx%d", ref::type_name(type), rows, K);
  if (segs.size() > 1) shape += fmt(" (%zu segs)", segs.size());
  const double bytes = rows * (double)rb + batch * (K * 1.0 + K / 32 * 4.0) + batch * rows * 4.0 * (residual ? 2 : 1);
  report("llama8b", name + " mmq", shape, batch, t_mmq, bytes,
         fmt("w%d; mmvq in 8-column groups %.1f us: %.2fx%s", wpr, t_mmvq, t_mmvq / t_mmq, alt.c_str()));
}

static void time_mmq() {
  std::printf("\n== MMQ timings (8B shapes, batch 16 and 32) against the mat-vec kernels in groups of 8 ==\n");
  for (int b : {16, 32}) {
    time_mmq_case("qkv (fused)", Q4_K, {4096, 1024, 1024}, 4096, b, false, false, default_wpr(6144, 4096, Q4_K));
    time_mmq_case("o-proj + residual", Q4_K, {4096}, 4096, b, true, false, default_wpr(4096, 4096, Q4_K));
    time_mmq_case("gate+up (2 segs)", Q4_K, {14336, 14336}, 4096, b, false, false, 1);
    time_mmq_case("down + residual", Q4_K, {4096}, 14336, b, true, false, default_wpr(4096, 14336, Q4_K));
    time_mmq_case("down + residual", Q6_K, {4096}, 14336, b, true, false, default_wpr(4096, 14336, Q6_K));
    time_mmq_case("head + argmax", Q6_K, {128256}, 4096, b, false, true, default_wpr(128256, 4096, Q6_K));
  }
}

// ---------------------------------------------------------------------------------------------
// (c) A whole decode step, 8B-shaped, Q4_K_M-like

struct Tensor {
  uint8_t* p = nullptr;
  int type = 0, rows = 0, K = 0;
  size_t rb = 0;
};

struct Model8B {
  static constexpr int L = 32, D = 4096, F = 14336, NH = 32, NKV = 8, HD = 128, V = 128256;
  Tensor embd, head;
  std::vector<Tensor> wq, wk, wv, wo, wg, wu, wd;
  std::vector<float*> attn_norm, ffn_norm;
  float* out_norm = nullptr;
  float* inv_freq = nullptr;
  size_t bytes = 0;
  int cap = 0, slots = 0;
  half *kc = nullptr, *vc = nullptr;
  size_t slot_stride = 0, layer_stride = 0;

  Tensor make(int type, int rows, int K, uint64_t seed) {
    Tensor t;
    t.type = type;
    t.rows = rows;
    t.K = K;
    t.rb = (size_t)K / ref::block_values(type) * ref::block_bytes(type);
    const size_t n = rows * t.rb;
    CK(cudaMalloc(&t.p, n + 16));
    fill_words<<<2048, 256>>>((uint32_t*)t.p, (n + 3) / 4, seed);
    fix_scales<<<2048, 256>>>(t.p, n / ref::block_bytes(type), type, 1.0f / (typical(type) * std::sqrt((float)K)), seed);
    bytes += n;
    return t;
  }
  static bool more_bits(int i) { return i < L / 8 || i >= 7 * L / 8 || (i - L / 8) % 3 == 2; }

  void build(int cap_, int slots_) {
    cap = cap_;
    slots = slots_;
    embd = make(Q4_K, V, D, 1);
    bytes -= embd.rows * embd.rb;  // only one row of it is read per token
    head = make(Q6_K, V, D, 2);
    for (int l = 0; l < L; ++l) {
      const uint64_t s = 100 + 10 * l;
      wq.push_back(make(Q4_K, NH * HD, D, s));
      wk.push_back(make(Q4_K, NKV * HD, D, s + 1));
      wv.push_back(make(more_bits(l) ? Q6_K : Q4_K, NKV * HD, D, s + 2));
      wo.push_back(make(Q4_K, D, NH * HD, s + 3));
      wg.push_back(make(Q4_K, F, D, s + 4));
      wu.push_back(make(Q4_K, F, D, s + 5));
      wd.push_back(make(more_bits(l) ? Q6_K : Q4_K, D, F, s + 6));
      float *an, *fn;
      CK(cudaMalloc(&an, D * 4));
      CK(cudaMalloc(&fn, D * 4));
      fill_float<<<16, 256>>>(an, D, s + 7, 1.0f, 0.1f);
      fill_float<<<16, 256>>>(fn, D, s + 8, 1.0f, 0.1f);
      attn_norm.push_back(an);
      ffn_norm.push_back(fn);
    }
    CK(cudaMalloc(&out_norm, D * 4));
    fill_float<<<16, 256>>>(out_norm, D, 3, 1.0f, 0.1f);
    std::vector<float> inv(HD / 2);
    for (int i = 0; i < HD / 2; ++i) inv[i] = std::pow(500000.0f, -2.0f * i / HD);
    CK(cudaMalloc(&inv_freq, HD / 2 * 4));
    CK(cudaMemcpy(inv_freq, inv.data(), HD / 2 * 4, cudaMemcpyHostToDevice));
    slot_stride = (size_t)NKV * cap * HD;
    layer_stride = slot_stride * slots;
    CK(cudaMalloc(&kc, L * layer_stride * 2));
    CK(cudaMalloc(&vc, L * layer_stride * 2));
    // Every slot holds the same cache (the period is one slot), so rows of a batch that start from
    // the same token and position must produce the same tokens as one row alone.
    for (int l = 0; l < L; ++l) {
      fill_half<<<2048, 256>>>(kc + l * layer_stride, layer_stride, slot_stride, 7000 + l, 1.0f);
      fill_half<<<2048, 256>>>(vc + l * layer_stride, layer_stride, slot_stride, 9000 + l, 1.0f);
    }
    CK(cudaDeviceSynchronize());
  }
};

struct StepBuffers {
  Dev<float> x, qkv, logits, pv;
  Dev<int8_t> xq, aq, hq;
  Dev<half2> xds, ads, hds;
  Dev<float> po;
  Dev<float2> pml;
  Dev<int> pi, tokens, pos, slot;
  int nsplit = 16;
  StepBuffers(int B, int nsplit_)
      : x((size_t)B * Model8B::D), qkv((size_t)B * (Model8B::NH + 2 * Model8B::NKV) * Model8B::HD), logits((size_t)B * Model8B::V),
        pv((size_t)B * 4 * g_sms * 8), xq((size_t)B * Model8B::D), aq((size_t)B * Model8B::D), hq((size_t)B * Model8B::F),
        xds((size_t)B * Model8B::D / 32), ads((size_t)B * Model8B::D / 32), hds((size_t)B * Model8B::F / 32),
        po((size_t)B * Model8B::NH * nsplit_ * Model8B::HD), pml((size_t)B * Model8B::NH * nsplit_), pi((size_t)B * 4 * g_sms * 8),
        tokens(B), pos(B), slot(B), nsplit(nsplit_) {}
};

// Enqueues one decode step for B rows; returns the number of kernels.
static int enqueue_step(cudaStream_t st, const Model8B& m, StepBuffers& b, int B) {
  using M = Model8B;
  int k = 0;
  const int qkv_ld = (M::NH + 2 * M::NKV) * M::HD;
  rbee_embed_rows<<<dim3(M::D / 256, B), 256, 0, st>>>(Q4_K, m.embd.p, (long long)m.embd.rb, b.tokens.p, M::D, 1.0f, b.x.p, M::D);
  ++k;
  for (int l = 0; l < M::L; ++l) {
    NormArgs n{};
    n.x = b.x.p;
    n.w = m.attn_norm[l];
    n.yq = b.xq.p;
    n.yds = b.xds.p;
    n.ldx = M::D;
    n.ldyq = M::D;
    n.ldyds = M::D / 32;
    n.K = M::D;
    n.eps = 1e-5f;
    launch_norm(st, B, n);
    ++k;
    // Q, K (and V when it has the same type) in one launch.
    const Tensor *segs[3] = {&m.wq[l], &m.wk[l], &m.wv[l]};
    float* outs[3] = {b.qkv.p, b.qkv.p + M::NH * M::HD, b.qkv.p + (M::NH + M::NKV) * M::HD};
    const bool same = m.wv[l].type == m.wq[l].type;
    for (int pass = 0; pass < (same ? 1 : 2); ++pass) {
      MmvqArgs a{};
      const int first = pass == 0 ? 0 : 2, count = same ? 3 : (pass == 0 ? 2 : 1);
      int rows = 0;
      for (int s = 0; s < count; ++s) {
        const Tensor* t = segs[first + s];
        a.seg[s] = MmvqSeg{t->p, outs[first + s], nullptr, t->rows, qkv_ld, 0, 0};
        rows += t->rows;
      }
      a.nseg = count;
      a.xq = b.xq.p;
      a.xds = b.xds.p;
      a.ldxq = M::D;
      a.ldxds = M::D / 32;
      a.w_stride = (long long)segs[first]->rb;
      a.K = M::D;
      a.warps_per_row = wpr_for(segs[first]->type, rows, M::D, B);
      launch_mmvq(st, segs[first]->type, B, a);
      ++k;
    }
    RopeArgs r{};
    r.q = b.qkv.p;
    r.k = b.qkv.p + M::NH * M::HD;
    r.v = b.qkv.p + (M::NH + M::NKV) * M::HD;
    r.q_out = b.qkv.p;
    r.k_cache = m.kc + l * m.layer_stride;
    r.v_cache = m.vc + l * m.layer_stride;
    r.pos = b.pos.p;
    r.slot = b.slot.p;
    r.inv_freq = m.inv_freq;
    r.slot_stride = (long long)m.slot_stride;
    r.ldq = r.ldk = r.ldv = r.ldqo = qkv_ld;
    r.n_head = M::NH;
    r.n_kv = M::NKV;
    r.hd = M::HD;
    r.n_rot = M::HD;
    r.cap = m.cap;
    r.neox = 0;
    r.freq_scale = 1.0f;
    r.eps = 1e-5f;
    launch_rope(st, B, r);
    ++k;
    AttnArgs a{};
    a.q = b.qkv.p;
    a.k_cache = m.kc + l * m.layer_stride;
    a.v_cache = m.vc + l * m.layer_stride;
    a.pos = b.pos.p;
    a.slot = b.slot.p;
    a.part_o = b.po.p;
    a.part_ml = b.pml.p;
    a.slot_stride = (long long)m.slot_stride;
    a.ldq = qkv_ld;
    a.n_head = M::NH;
    a.n_kv = M::NKV;
    a.cap = m.cap;
    a.nsplit = b.nsplit;
    a.scale = 1.0f / std::sqrt((float)M::HD);
    AttnReduceArgs rr{};
    rr.part_o = b.po.p;
    rr.part_ml = b.pml.p;
    rr.yq = b.aq.p;
    rr.yds = b.ads.p;
    rr.n_head = M::NH;
    rr.nsplit = b.nsplit;
    rr.ldyq = M::D;
    rr.ldyds = M::D / 32;
    launch_attn(st, B, M::HD, a, rr);
    k += 2;
    MmvqArgs o{};
    o.seg[0] = MmvqSeg{m.wo[l].p, b.x.p, b.x.p, M::D, M::D, M::D, 0};
    o.nseg = 1;
    o.xq = b.aq.p;
    o.xds = b.ads.p;
    o.ldxq = M::D;
    o.ldxds = M::D / 32;
    o.w_stride = (long long)m.wo[l].rb;
    o.K = M::D;
    o.warps_per_row = wpr_for(Q4_K, M::D, M::D, B);
    launch_mmvq(st, Q4_K, B, o);
    ++k;
    n.w = m.ffn_norm[l];
    launch_norm(st, B, n);
    ++k;
    GluArgs g{};
    g.w_gate = m.wg[l].p;
    g.w_up = m.wu[l].p;
    g.xq = b.xq.p;
    g.xds = b.xds.p;
    g.yq = b.hq.p;
    g.yds = b.hds.p;
    g.w_stride = (long long)m.wg[l].rb;
    g.K = M::D;
    g.F = M::F;
    g.ldxq = M::D;
    g.ldxds = M::D / 32;
    g.ldyq = M::F;
    g.ldyds = M::F / 32;
    g.act = 0;
    launch_glu(st, Q4_K, B, g);
    ++k;
    MmvqArgs d{};
    d.seg[0] = MmvqSeg{m.wd[l].p, b.x.p, b.x.p, M::D, M::D, M::D, 0};
    d.nseg = 1;
    d.xq = b.hq.p;
    d.xds = b.hds.p;
    d.ldxq = M::F;
    d.ldxds = M::F / 32;
    d.w_stride = (long long)m.wd[l].rb;
    d.K = M::F;
    d.warps_per_row = wpr_for(m.wd[l].type, M::D, M::F, B);
    launch_mmvq(st, m.wd[l].type, B, d);
    ++k;
  }
  NormArgs n{};
  n.x = b.x.p;
  n.w = m.out_norm;
  n.yq = b.xq.p;
  n.yds = b.xds.p;
  n.ldx = M::D;
  n.ldyq = M::D;
  n.ldyds = M::D / 32;
  n.K = M::D;
  n.eps = 1e-5f;
  launch_norm(st, B, n);
  ++k;
  MmvqArgs h{};
  h.seg[0] = MmvqSeg{m.head.p, b.logits.p, nullptr, M::V, M::V, 0, 0};
  h.nseg = 1;
  h.xq = b.xq.p;
  h.xds = b.xds.p;
  h.ldxq = M::D;
  h.ldxds = M::D / 32;
  h.w_stride = (long long)m.head.rb;
  h.K = M::D;
  h.warps_per_row = wpr_for(Q6_K, M::V, M::D, B);
  h.argmax_val = b.pv.p;
  h.argmax_idx = b.pi.p;
  const int grid = head_grid(M::V, h.warps_per_row);
  launch_mmvq(st, Q6_K, B, h, grid);
  ++k;
  // The greedy token becomes the next step's input, and the position advances: the graph can be
  // replayed back to back with no host work at all.
  rbee_argmax_final<<<B, 256, 0, st>>>(b.pv.p, b.pi.p, grid, grid, b.tokens.p, nullptr, b.pos.p);
  ++k;
  return k;
}

static void step_bench(bool quick) {
  std::printf("\n== whole decode step: Llama-3-8B-shaped, Q4_K_M-like (random weights), one CUDA graph per batch size ==\n");
  Model8B m;
  const int cap = 2048 + 160, slots = 8;
  m.build(cap, slots);
  size_t q6 = 0;
  for (int l = 0; l < Model8B::L; ++l) q6 += Model8B::more_bits(l);
  std::printf("  weights read per token: %.3f GB (attn_v and ffn_down Q6_K in %zu of 32 layers, head Q6_K, the rest Q4_K)\n",
              m.bytes / 1e9, q6);
  cudaStream_t st;
  CK(cudaStreamCreateWithFlags(&st, cudaStreamNonBlocking));
  const int steps = quick ? 8 : 32;
  for (int B : {1, 8}) {
    for (int ctx : {128, 2048}) {
      auto it = g_best_wpr.find(fmt("attn/%d/%d/%d/%d", 128, 8, B, ctx));
      const int nsplit = it != g_best_wpr.end() ? it->second : 16;
      StepBuffers b(B, nsplit);
      CK(cudaDeviceSynchronize());  // its cudaMemsets ran on the legacy stream
      std::vector<int> tok(B, 1234), pos(B, ctx), slot(B);
      for (int i = 0; i < B; ++i) slot[i] = i;
      b.slot.up(slot);
      auto reset = [&]() {
        b.tokens.up(tok);
        b.pos.up(pos);
      };
      // Eager: the same kernels launched one by one; tokens recorded per step.
      reset();
      int kernels = 0;
      std::vector<int> eager_tokens;
      auto t0 = std::chrono::steady_clock::now();
      for (int s = 0; s < steps; ++s) {
        kernels = enqueue_step(st, m, b, B);
        CK(cudaStreamSynchronize(st));
        auto t = b.tokens.down();
        eager_tokens.insert(eager_tokens.end(), t.begin(), t.end());
      }
      const double eager_us = std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - t0).count() / steps;
      auto eager_logits = b.logits.down();
      CK(cudaGetLastError());
      // Graph: captured once, replayed.
      cudaGraph_t g;
      cudaGraphExec_t ge;
      CK(cudaStreamBeginCapture(st, cudaStreamCaptureModeGlobal));
      enqueue_step(st, m, b, B);
      CK(cudaStreamEndCapture(st, &g));
      CK(cudaGraphInstantiate(&ge, g, 0));
      reset();
      std::vector<int> graph_tokens;
      for (int s = 0; s < steps; ++s) {
        CK(cudaGraphLaunch(ge, st));
        CK(cudaStreamSynchronize(st));
        auto t = b.tokens.down();
        graph_tokens.insert(graph_tokens.end(), t.begin(), t.end());
      }
      auto graph_logits = b.logits.down();
      const bool same = graph_tokens == eager_tokens && std::memcmp(graph_logits.data(), eager_logits.data(), graph_logits.size() * 4) == 0;
      bool rows_same = true;
      for (int s = 0; s < steps; ++s)
        for (int i = 1; i < B; ++i) rows_same &= graph_tokens[s * B + i] == graph_tokens[s * B];
      for (int i = 1; i < B; ++i) rows_same &= std::memcmp(&graph_logits[(size_t)i * Model8B::V], graph_logits.data(), Model8B::V * 4) == 0;
      // Back-to-back replays (device-driven: tokens and positions advance inside the graph).
      reset();
      cudaEvent_t e0, e1;
      CK(cudaEventCreate(&e0));
      CK(cudaEventCreate(&e1));
      CK(cudaEventRecord(e0, st));
      for (int s = 0; s < steps; ++s) CK(cudaGraphLaunch(ge, st));
      CK(cudaEventRecord(e1, st));
      CK(cudaEventSynchronize(e1));
      float ms;
      CK(cudaEventElapsedTime(&ms, e0, e1));
      const double graph_us = ms * 1000.0 / steps;
      // With the engine's per-token host round trip: ids and positions in, the token ids out, sync.
      int *h_in, *h_out;
      CK(cudaMallocHost(&h_in, 2 * B * sizeof(int)));
      CK(cudaMallocHost(&h_out, B * sizeof(int)));
      for (int i = 0; i < B; ++i) {
        h_in[i] = 1234;
        h_in[B + i] = ctx;
      }
      auto t1 = std::chrono::steady_clock::now();
      for (int s = 0; s < steps; ++s) {
        CK(cudaMemcpyAsync(b.tokens.p, h_in, B * sizeof(int), cudaMemcpyHostToDevice, st));
        CK(cudaMemcpyAsync(b.pos.p, h_in + B, B * sizeof(int), cudaMemcpyHostToDevice, st));
        CK(cudaGraphLaunch(ge, st));
        CK(cudaMemcpyAsync(h_out, b.tokens.p, B * sizeof(int), cudaMemcpyDeviceToHost, st));
        CK(cudaStreamSynchronize(st));
        for (int i = 0; i < B; ++i) {
          h_in[i] = h_out[i];
          h_in[B + i] += 1;
        }
      }
      const double host_us = std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - t1).count() / steps;
      CK(cudaFreeHost(h_in));
      CK(cudaFreeHost(h_out));
      const double kv_bytes = 2.0 * Model8B::L * Model8B::NKV * Model8B::HD * 2.0 * (ctx + steps / 2) * B;
      const double gbs = (m.bytes + kv_bytes) / (graph_us * 1e-6) / 1e9;
      const double tps = 1e6 / graph_us, agg = tps * B;
      std::printf("  b=%d ctx %4d: %d kernels/step, nsplit %d | graph %8.1f us/step = %7.1f tok/s per stream, %7.1f aggregate | "
                  "%6.1f GB/s = %4.1f%% of peak | with host round trip %8.1f us | eager %8.1f us\n",
                  B, ctx, kernels, nsplit, graph_us, tps, agg, gbs, 100 * gbs / g_peak_gbs, host_us, eager_us);
      check(fmt("step b=%d ctx %d: graph replay == eager launches (tokens and logits, %d steps)", B, ctx, steps), same, "");
      if (B > 1) check(fmt("step b=%d ctx %d: every row == row 0 (same start, batch-invariant)", B, ctx), rows_same, "");
      S.steps.push_back(fmt("{\"batch\":%d,\"ctx\":%d,\"kernels\":%d,\"nsplit\":%d,\"graph_us\":%.1f,\"tok_s_per_stream\":%.1f,"
                            "\"tok_s_aggregate\":%.1f,\"gbs\":%.1f,\"pct_peak\":%.1f,\"host_roundtrip_us\":%.1f,\"eager_us\":%.1f,"
                            "\"weight_bytes\":%.0f,\"graph_equals_eager\":%s}",
                            B, ctx, kernels, nsplit, graph_us, tps, agg, gbs, 100 * gbs / g_peak_gbs, host_us, eager_us, (double)m.bytes,
                            same ? "true" : "false"));
      CK(cudaGraphExecDestroy(ge));
      CK(cudaGraphDestroy(g));
      CK(cudaEventDestroy(e0));
      CK(cudaEventDestroy(e1));
    }
  }
  CK(cudaStreamDestroy(st));
}

// ---------------------------------------------------------------------------------------------

// The CPU references' own consistency, runnable anywhere: the integer unit sums and the
// dequantized values are two independent readings of each format; they must agree.
static int cpu_selftest() {
  Rng rng(77);
  int bad = 0;
  for (int type : {ref::Q4_0, ref::Q5_0, ref::Q8_0, ref::Q4_K, ref::Q5_K, ref::Q6_K}) {
    const int K = 512, rows = 16;
    const size_t rb = (size_t)K / ref::block_values(type) * ref::block_bytes(type);
    std::vector<uint8_t> w(rows * rb);
    random_blocks(type, w.data(), w.size() / ref::block_bytes(type), rng, 0.01f);
    auto xf = random_floats(K, rng);
    auto xq = ref::quantize_rows(xf.data(), 1, K);
    std::vector<double> out, mag;
    ref::matvec(type, w.data(), rb, rows, K, xq, out, mag);
    double worst = 0;
    for (int r = 0; r < rows; ++r) {
      // Dequantized weights times dequantized activations (K-quant mins against s, as the kernels).
      double want = 0;
      const int qk = ref::block_values(type);
      for (int e = 0; e < K; ++e) {
        const uint8_t* blk = &w[r * rb + (size_t)(e / qk) * ref::block_bytes(type)];
        double wv = ref::dequant(type, blk, e % qk);
        const int u = e / 32;
        const double y = (double)xq.d(0, u) * xq.qs[e];
        if (type == ref::Q4_K || type == ref::Q5_K) {
          ref::Unpacked up;
          ref::unpack(type, blk, up);
          const int s = (e % qk) / 32;
          wv += (double)up.dmin * up.m[s];  // the min apart: it multiplies s, not the quantized y
          if (e % 32 == 0) want -= (double)up.dmin * up.m[s] * xq.s(0, u);
        }
        want += wv * y;
      }
      worst = std::max(worst, std::fabs(want - out[r]) / (mag[r] + 1e-30));
    }
    const bool ok = worst < 1e-5;
    bad += !ok;
    std::printf("  [%s] %s: integer-sum reference vs dequantized reference, worst rel %.2e\n", ok ? "PASS" : "FAIL", ref::type_name(type), worst);
  }
  // f16 conversion round trips and rounding.
  int hb = 0;
  for (uint32_t h = 0; h < 0x7c00; ++h) hb += ref::f2h(ref::h2f((uint16_t)h)) != h;
  hb += ref::f2h(65519.0f) != 0x7bff;
  hb += ref::f2h(65520.0f) != 0x7c00;
  hb += ref::f2h(1.0f + 1.0f / 2048) != 0x3c00;  // a tie rounds to even
  std::printf("  [%s] f16 conversions (%d bad)\n", hb ? "FAIL" : "PASS", hb);
  bad += hb != 0;
  // q8_1: the largest value maps to +-127, zeros stay zero.
  float x[32];
  for (int i = 0; i < 32; ++i) x[i] = 0.1f * (i - 16);
  int8_t q[32];
  uint16_t d, s;
  ref::quantize_block_q8_1(x, q, &d, &s);
  const bool qok = q[0] == -127 && q[16] == 0 && std::fabs(ref::h2f(s) - (-1.6f)) < 1e-3;
  std::printf("  [%s] q8_1 block: q[0]=%d q[16]=%d s=%g\n", qok ? "PASS" : "FAIL", q[0], q[16], ref::h2f(s));
  bad += !qok;
  return bad ? 1 : 0;
}

int main(int argc, char** argv) {
  if (argc > 1 && std::string(argv[1]) == "--cpu-selftest") return cpu_selftest();
  const std::string out = argc > 1 ? argv[1] : "summary.json";
  const bool quick = argc > 2 && std::string(argv[2]) == "--quick";
  const bool mmq_only = argc > 2 && std::string(argv[2]) == "--mmq";
  const bool prefill_only = argc > 2 && std::string(argv[2]) == "--prefill";
  cudaDeviceProp prop;
  CK(cudaGetDeviceProperties(&prop, 0));
  g_sms = prop.multiProcessorCount;
  int rt = 0, drv = 0;
  cudaRuntimeGetVersion(&rt);
  cudaDriverGetVersion(&drv);
  S.device = fmt("%s, sm_%d%d, %d SMs, %.1f GiB, runtime %d, driver %d", prop.name, prop.major, prop.minor, prop.multiProcessorCount,
                 prop.totalGlobalMem / 1073741824.0, rt, drv);
  if (std::getenv("RBEE_PEAK_GBS")) g_peak_gbs = std::atof(std::getenv("RBEE_PEAK_GBS"));
  std::printf("device: %s\n", S.device.c_str());
  const auto t0 = std::chrono::steady_clock::now();
  std::printf("\n== CPU reference self-test ==\n");
  check("CPU references self-consistent", cpu_selftest() == 0, "");
  if (mmq_only) {
    check_mmq();
    time_mmq();
  } else if (prefill_only) {
    check_dequant();
    time_prefill();
  } else {
  check_norm();
  check_mmvq();
  check_glu();
  check_rope();
  check_attention();
  check_embed();
  timings(quick);
  step_bench(quick);
  check_mmq();
  time_mmq();
  check_dequant();
  time_prefill();
  }
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::printf("\n%d checks passed, %d failed; %.1f s\n", S.passed, S.failed, secs);
  FILE* f = std::fopen(out.c_str(), "w");
  if (f) {
    std::fprintf(f, "{\"device\":\"%s\",\"peak_gbs\":%.0f,\"passed\":%d,\"failed\":%d,\"seconds\":%.1f,\n\"checks\":[\n", jesc(S.device).c_str(),
                 g_peak_gbs, S.passed, S.failed, secs);
    for (size_t i = 0; i < S.checks.size(); ++i) std::fprintf(f, "%s%s\n", S.checks[i].c_str(), i + 1 < S.checks.size() ? "," : "");
    std::fprintf(f, "],\n\"timings\":[\n");
    for (size_t i = 0; i < S.timings.size(); ++i) std::fprintf(f, "%s%s\n", S.timings[i].c_str(), i + 1 < S.timings.size() ? "," : "");
    std::fprintf(f, "],\n\"steps\":[\n");
    for (size_t i = 0; i < S.steps.size(); ++i) std::fprintf(f, "%s%s\n", S.steps[i].c_str(), i + 1 < S.steps.size() ? "," : "");
    std::fprintf(f, "]}\n");
    std::fclose(f);
  }
  return S.failed ? 1 : 0;
}
