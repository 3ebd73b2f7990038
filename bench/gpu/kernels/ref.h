// CPU references for rbee's decode kernels (native/kernels), written from the block formats
// independently of the CUDA code: element-wise unpacking, plain loops. Host-only C++; compiled
// with -ffp-contract=off so that the float operations happen exactly as written.
//
// Exact where the kernel's arithmetic is fixed and replayable: the integer unit sums, q8_1
// quantization (the xor-butterfly sum order included), RMSNorm + q8_1 (the kernel's reduction
// order is replayed), dequantization. Everything else is compared in double with a stated bound.
#pragma once
#include <cmath>
#include <cstdint>
#include <cstring>
#include <vector>

namespace ref {

enum { Q4_0 = 2, Q5_0 = 6, Q8_0 = 8, Q4_K = 12, Q5_K = 13, Q6_K = 14 };

inline int block_bytes(int t) {
  return t == Q4_0 ? 18 : t == Q5_0 ? 22 : t == Q8_0 ? 34 : t == Q4_K ? 144 : t == Q5_K ? 176 : t == Q6_K ? 210 : 0;
}
inline int block_values(int t) { return (t == Q4_K || t == Q5_K || t == Q6_K) ? 256 : 32; }
inline const char* type_name(int t) {
  return t == Q4_0 ? "q4_0" : t == Q5_0 ? "q5_0" : t == Q8_0 ? "q8_0" : t == Q4_K ? "q4_k" : t == Q5_K ? "q5_k" : t == Q6_K ? "q6_k" : "?";
}

// IEEE half <-> float, round to nearest even (as __float2half_rn).
inline uint16_t f2h(float f) {
  uint32_t x;
  std::memcpy(&x, &f, 4);
  const uint32_t sign = (x >> 16) & 0x8000u, ax = x & 0x7fffffffu;
  if (ax >= 0x7f800000u) return (uint16_t)(sign | (ax > 0x7f800000u ? 0x7e00u : 0x7c00u));
  if (ax >= 0x477ff000u) return (uint16_t)(sign | 0x7c00u);
  if (ax < 0x38800000u) {
    float af;
    std::memcpy(&af, &ax, 4);
    return (uint16_t)(sign | (uint32_t)std::nearbyint(af * 16777216.0f));
  }
  const uint32_t mant = ax & 0x7fffffu;
  uint32_t h = ((((ax >> 23) - 127 + 15) & 0x1f) << 10) | (mant >> 13);
  const uint32_t rem = mant & 0x1fffu;
  if (rem > 0x1000u || (rem == 0x1000u && (h & 1u))) h++;
  return (uint16_t)(sign | h);
}
inline float h2f(uint16_t h) {
  const uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
  const uint32_t e = (h >> 10) & 0x1f, m = h & 0x3ff;
  uint32_t x;
  if (e == 0) {
    const float v = std::ldexp((float)m, -24);
    std::memcpy(&x, &v, 4);
    x |= sign;
  } else if (e == 31) {
    x = sign | 0x7f800000u | (m << 13);
  } else {
    x = sign | ((e - 15 + 127) << 23) | (m << 13);
  }
  float f;
  std::memcpy(&f, &x, 4);
  return f;
}
inline float half_at(const uint8_t* p) { return h2f((uint16_t)(p[0] | (p[1] << 8))); }

// What the GPU's xor butterfly over 32 lanes leaves in every lane (a + b == b + a, so one value).
inline float butterfly32(const float* in, int n) {
  float v[32];
  for (int i = 0; i < 32; ++i) v[i] = i < n ? in[i] : 0.0f;
  for (int o = 16; o > 0; o >>= 1) {
    float t[32];
    for (int i = 0; i < 32; ++i) t[i] = v[i] + v[i ^ o];
    std::memcpy(v, t, sizeof v);
  }
  return v[0];
}

// ggml's CUDA quantize_q8_1 for one block of 32: d = amax/127, q = roundf(x/d), s = sum x.
inline void quantize_block_q8_1(const float* x, int8_t* q, uint16_t* d_out, uint16_t* s_out) {
  float amax = 0.0f;
  for (int i = 0; i < 32; ++i) amax = std::fmax(amax, std::fabs(x[i]));
  const float sum = butterfly32(x, 32);
  const float d = amax / 127.0f;
  for (int i = 0; i < 32; ++i) q[i] = amax == 0.0f ? 0 : (int8_t)std::round(x[i] / d);
  *d_out = f2h(d);
  *s_out = f2h(sum);
}

// Activations as q8_1 planes: qs [rows][ld] int8, ds [rows][K/32] as (d, s) half bits.
struct Q8 {
  int rows = 0, K = 0, ld = 0;
  std::vector<int8_t> qs;
  std::vector<uint16_t> ds;  // 2 per block
  float d(int r, int b) const { return h2f(ds[2 * ((size_t)r * (K / 32) + b)]); }
  float s(int r, int b) const { return h2f(ds[2 * ((size_t)r * (K / 32) + b) + 1]); }
};
inline Q8 quantize_rows(const float* x, int rows, int K) {
  Q8 a;
  a.rows = rows;
  a.K = K;
  a.ld = (K + 15) / 16 * 16;
  a.qs.assign((size_t)rows * a.ld, 0);
  a.ds.assign((size_t)rows * (K / 32) * 2, 0);
  for (int r = 0; r < rows; ++r)
    for (int b = 0; b < K / 32; ++b)
      quantize_block_q8_1(x + (size_t)r * K + 32 * b, &a.qs[(size_t)r * a.ld + 32 * b], &a.ds[2 * ((size_t)r * (K / 32) + b)],
                          &a.ds[2 * ((size_t)r * (K / 32) + b) + 1]);
  return a;
}

// The kernel's RMSNorm scale, its reduction order replayed: 1024 thread partials (fmaf in index
// order), a butterfly per warp, a butterfly of the 32 warp sums.
inline float norm_scale(const float* row, int K, float eps) {
  float part[1024];
  for (int t = 0; t < 1024; ++t) {
    float acc = 0.0f;
    for (int i = t; i < K; i += 1024) acc = std::fma(row[i], row[i], acc);
    part[t] = acc;
  }
  float warps[32];
  for (int w = 0; w < 32; ++w) warps[w] = butterfly32(part + 32 * w, 32);
  const float ss = butterfly32(warps, 32);
  return 1.0f / std::sqrt(ss / (float)K + eps);
}

// One block's integer weights (after the format's offset), and its scales.
struct Unpacked {
  int q[256];
  int sc[16];  // K-quants: 8 sub-block scales; Q6_K: 16 group scales
  int m[8];    // Q4_K / Q5_K mins
  float d = 0, dmin = 0;
};

inline void scale_min_k4(int j, const uint8_t* s, int& sc, int& m) {
  if (j < 4) {
    sc = s[j] & 63;
    m = s[j + 4] & 63;
  } else {
    sc = (s[j + 4] & 0xF) | ((s[j - 4] >> 6) << 4);
    m = (s[j + 4] >> 4) | ((s[j] >> 6) << 4);
  }
}

inline void unpack(int type, const uint8_t* b, Unpacked& u) {
  switch (type) {
    case Q4_0:
      u.d = half_at(b);
      for (int e = 0; e < 32; ++e) u.q[e] = (e < 16 ? (b[2 + e] & 15) : (b[2 + e - 16] >> 4)) - 8;
      break;
    case Q5_0: {
      u.d = half_at(b);
      const uint32_t qh = b[2] | (b[3] << 8) | (b[4] << 16) | ((uint32_t)b[5] << 24);
      for (int e = 0; e < 32; ++e) {
        const int lo = e < 16 ? (b[6 + e] & 15) : (b[6 + e - 16] >> 4);
        u.q[e] = (lo | (int)(((qh >> e) & 1) << 4)) - 16;
      }
      break;
    }
    case Q8_0:
      u.d = half_at(b);
      for (int e = 0; e < 32; ++e) u.q[e] = (int8_t)b[2 + e];
      break;
    case Q4_K:
    case Q5_K: {
      const bool five = type == Q5_K;
      u.d = half_at(b);
      u.dmin = half_at(b + 2);
      for (int s = 0; s < 8; ++s) scale_min_k4(s, b + 4, u.sc[s], u.m[s]);
      const uint8_t* qs = b + (five ? 48 : 16);
      for (int e = 0; e < 256; ++e) {
        const int s = e / 32, l = e % 32;
        int q = (s & 1) ? (qs[32 * (s / 2) + l] >> 4) : (qs[32 * (s / 2) + l] & 15);
        if (five && ((b[16 + l] >> s) & 1)) q += 16;
        u.q[e] = q;
      }
      break;
    }
    case Q6_K: {
      u.d = half_at(b + 208);
      for (int g = 0; g < 16; ++g) u.sc[g] = (int8_t)b[192 + g];
      for (int e = 0; e < 256; ++e) {
        const int h = e / 128, r = e % 128, c = r / 32, l = r % 32;
        const uint8_t ql = b[64 * h + 32 * (c & 1) + l];
        const int lo = c >= 2 ? (ql >> 4) : (ql & 15);
        const int hi = (b[128 + 32 * h + l] >> (2 * c)) & 3;
        u.q[e] = (lo | (hi << 4)) - 32;
      }
      break;
    }
  }
}

// The exact integer sum of unit `unit` (values 32*unit .. 32*unit+31 of the block) with y.
inline int unit_isum(int type, const Unpacked& u, int unit, const int8_t* y) {
  int s = 0;
  for (int e = 0; e < 32; ++e) {
    const int i = 32 * unit + e;
    int w = u.q[i];
    if (type == Q6_K) w *= u.sc[i / 16];
    s += w * (int)y[e];
  }
  if (type == Q4_K || type == Q5_K) s *= u.sc[unit];
  return s;
}

// The unit's float value as the kernels define it (in double), and its magnitude for the bound.
inline double unit_value(int type, const Unpacked& u, int unit, int isum, float d8, float s8, double* mag) {
  if (type == Q4_K || type == Q5_K) {
    const double a = (double)u.d * d8 * isum, b = (double)u.dmin * u.m[unit] * s8;
    *mag += std::fabs(a) + std::fabs(b);
    return a - b;
  }
  const double a = (double)u.d * d8 * isum;
  *mag += std::fabs(a);
  return a;
}

// Dequantized value e of a block, with the kernels' float operations in their order.
inline float dequant(int type, const uint8_t* b, int e) {
  Unpacked u;
  unpack(type, b, u);
  switch (type) {
    case Q4_K:
    case Q5_K: {
      const int s = e / 32;
      const float d1 = u.d * (float)u.sc[s], m1 = u.dmin * (float)u.m[s];
      return d1 * (float)u.q[e] - m1;
    }
    case Q6_K: return (u.d * (float)u.sc[e / 16]) * (float)u.q[e];
    default: return u.d * (float)u.q[e];
  }
}

// Weights W (rows x K, ggml blocks) times q8_1 activations: per (column, row) the double value and
// the sum of |terms| (the scale of the float rounding the kernel may add).
inline void matvec(int type, const uint8_t* w, size_t row_bytes, int rows, int K, const Q8& x, std::vector<double>& out,
                   std::vector<double>& mag, std::vector<int>* isums = nullptr) {
  const int qk = block_values(type), bb = block_bytes(type), units = K / 32;
  out.assign((size_t)x.rows * rows, 0.0);
  mag.assign((size_t)x.rows * rows, 0.0);
  if (isums) isums->assign((size_t)x.rows * rows * units, 0);
  Unpacked u;
  for (int r = 0; r < rows; ++r) {
    for (int blk = 0; blk < K / qk; ++blk) {
      unpack(type, w + r * row_bytes + (size_t)blk * bb, u);
      for (int c = 0; c < x.rows; ++c) {
        for (int k = 0; k < qk / 32; ++k) {
          const int gu = blk * (qk / 32) + k;
          const int is = unit_isum(type, u, k, &x.qs[(size_t)c * x.ld + 32 * gu]);
          if (isums) (*isums)[((size_t)c * rows + r) * units + gu] = is;
          out[(size_t)c * rows + r] += unit_value(type, u, k, is, x.d(c, gu), x.s(c, gu), &mag[(size_t)c * rows + r]);
        }
      }
    }
  }
}

}  // namespace ref
