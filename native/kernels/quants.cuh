// Per weight type: how one thread reads its share of a block ("task") and dots it with q8_1
// activations. A unit is 32 consecutive values of a row, matching one q8_1 block of the
// activations; a task is the unit or units one thread takes from a block so that it reads each
// weight byte once (for Q4_K the low and high nibbles of the same 32 bytes are two units).
//
// The integer part of every unit is exact (dp4a on int8 values) and is what the CPU references
// check bit for bit:
//   Q4_0, Q5_0, Q8_0:  a = sum (q - offset) * y                 unit value = d * d8 * a
//   Q4_K, Q5_K:        a = scale * sum q * y                    unit value = d * d8 * a - dmin * min * s8
//   Q6_K:              a = sc_lo * sum_{l<16} (q-32) y + sc_hi * sum_{l>=16} (q-32) y,  value = d * d8 * a
// where d8, s8 are the activation block's d and s. The Q4_0/Q5_0 offsets are taken on the
// weights (exact); the K-quant mins use s8, the float sum of the unquantized activations (as
// ggml's MMQ kernels do), which keeps the inner loop one dp4a per 4 products at any batch width.
#pragma once
#include "common.cuh"

namespace rbee {

// Activation unit: 32 int8 values as 8 words, from the qs plane (16-byte aligned).
__device__ __forceinline__ void load_x(const int8_t* qs, int (&x)[8]) {
  const int4 a = __ldg(reinterpret_cast<const int4*>(qs));
  const int4 b = __ldg(reinterpret_cast<const int4*>(qs) + 1);
  x[0] = a.x; x[1] = a.y; x[2] = a.z; x[3] = a.w;
  x[4] = b.x; x[5] = b.y; x[6] = b.z; x[7] = b.w;
}

__device__ __forceinline__ int dot8(const int (&v)[8], const int (&x)[8]) {
  int s = 0;
#pragma unroll
  for (int i = 0; i < 8; ++i) s = __dp4a(v[i], x[i], s);
  return s;
}

// ggml's get_scale_min_k4 from the 12 scale bytes held as three little-endian words.
__device__ __forceinline__ void scale_min_k4(int u, unsigned w0, unsigned w1, unsigned w2, int& sc, int& m) {
  if (u < 4) {
    sc = (w0 >> (8 * u)) & 63;
    m = (w1 >> (8 * u)) & 63;
  } else {
    const int s = 8 * (u - 4);
    sc = ((w2 >> s) & 0xF) | (((w0 >> s) >> 6 & 3) << 4);
    m = ((w2 >> s) >> 4 & 0xF) | (((w1 >> s) >> 6 & 3) << 4);
  }
}

// Four low bits of `b` spread to bit 4 of each byte (Q5_0's fifth bit).
__device__ __forceinline__ int spread4(unsigned b) {
  return (int)(((b & 1u) << 4) | ((b & 2u) << 11) | ((b & 4u) << 18) | ((b & 8u) << 25));
}

struct TQ4_0 {
  static constexpr int TYPE = Q4_0, BYTES = 18, QK = 32, TASKS = 1, UPT = 1;
  struct W { int v[1][8]; float d; };
  __device__ static int unit(int, int) { return 0; }
  __device__ static void load(const uint8_t* blk, int, W& w) {
    int q[4];
    load_words_a2<4>(blk + 2, q);
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      w.v[0][i] = __vsub4(q[i] & 0x0F0F0F0F, 0x08080808);
      w.v[0][i + 4] = __vsub4((q[i] >> 4) & 0x0F0F0F0F, 0x08080808);
    }
    w.d = half_at(blk);
  }
  __device__ static void isums(const W& w, const int (&x)[UPT][8], int (&a)[UPT]) { a[0] = dot8(w.v[0], x[0]); }
  __device__ static float combine(const W& w, const int (&a)[UPT], const float2 (&ds)[UPT]) { return (w.d * ds[0].x) * (float)a[0]; }
  __device__ static float value(const uint8_t* blk, int e) {
    const uint8_t b = blk[2 + (e & 15)];
    const int q = (e < 16 ? (b & 15) : (b >> 4)) - 8;
    return half_at(blk) * (float)q;
  }
};

struct TQ5_0 {
  static constexpr int TYPE = Q5_0, BYTES = 22, QK = 32, TASKS = 1, UPT = 1;
  struct W { int v[1][8]; float d; };
  __device__ static int unit(int, int) { return 0; }
  __device__ static void load(const uint8_t* blk, int, W& w) {
    int q[5];  // qh (4 bytes at 2) then qs (16 bytes at 6)
    load_words_a2<5>(blk + 2, q);
    const unsigned qh = (unsigned)q[0];
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      const int lo = (q[i + 1] & 0x0F0F0F0F) | spread4(qh >> (4 * i));
      const int hi = ((q[i + 1] >> 4) & 0x0F0F0F0F) | spread4(qh >> (16 + 4 * i));
      w.v[0][i] = __vsub4(lo, 0x10101010);
      w.v[0][i + 4] = __vsub4(hi, 0x10101010);
    }
    w.d = half_at(blk);
  }
  __device__ static void isums(const W& w, const int (&x)[UPT][8], int (&a)[UPT]) { a[0] = dot8(w.v[0], x[0]); }
  __device__ static float combine(const W& w, const int (&a)[UPT], const float2 (&ds)[UPT]) { return (w.d * ds[0].x) * (float)a[0]; }
  __device__ static float value(const uint8_t* blk, int e) {
    const unsigned qh = blk[2] | (blk[3] << 8) | (blk[4] << 16) | ((unsigned)blk[5] << 24);
    const uint8_t b = blk[6 + (e & 15)];
    const int q = ((e < 16 ? (b & 15) : (b >> 4)) | (((qh >> e) & 1) << 4)) - 16;
    return half_at(blk) * (float)q;
  }
};

struct TQ8_0 {
  static constexpr int TYPE = Q8_0, BYTES = 34, QK = 32, TASKS = 1, UPT = 1;
  struct W { int v[1][8]; float d; };
  __device__ static int unit(int, int) { return 0; }
  __device__ static void load(const uint8_t* blk, int, W& w) {
    load_words_a2<8>(blk + 2, w.v[0]);
    w.d = half_at(blk);
  }
  __device__ static void isums(const W& w, const int (&x)[UPT][8], int (&a)[UPT]) { a[0] = dot8(w.v[0], x[0]); }
  __device__ static float combine(const W& w, const int (&a)[UPT], const float2 (&ds)[UPT]) { return (w.d * ds[0].x) * (float)a[0]; }
  __device__ static float value(const uint8_t* blk, int e) { return half_at(blk) * (float)(int8_t)blk[2 + e]; }
};

// Q4_K and Q5_K: task j (0..3) is the 32 bytes qs[32j..32j+32): units 2j (low nibbles) and 2j+1.
// Blocks are 144 / 176 bytes, multiples of 16: rows must start 16-byte aligned.
template <bool FIVE>
struct TQK45 {
  static constexpr int TYPE = FIVE ? Q5_K : Q4_K, BYTES = FIVE ? 176 : 144, QK = QK_K, TASKS = 4, UPT = 2;
  struct W { int v[2][8]; int sc[2]; float m[2]; float d, dmin; };
  __device__ static int unit(int t, int k) { return 2 * t + k; }
  __device__ static void load(const uint8_t* blk, int t, W& w) {
    const int4 h = __ldcs(reinterpret_cast<const int4*>(blk));
    const int4* qs = reinterpret_cast<const int4*>(blk + (FIVE ? 48 : 16) + 32 * t);
    const int4 q0 = __ldcs(qs), q1 = __ldcs(qs + 1);
    const int q[8] = {q0.x, q0.y, q0.z, q0.w, q1.x, q1.y, q1.z, q1.w};
#pragma unroll
    for (int i = 0; i < 8; ++i) {
      w.v[0][i] = q[i] & 0x0F0F0F0F;
      w.v[1][i] = (q[i] >> 4) & 0x0F0F0F0F;
    }
    if (FIVE) {
      const int4* qhp = reinterpret_cast<const int4*>(blk + 16);
      const int4 h0 = __ldcs(qhp), h1 = __ldcs(qhp + 1);
      const int qh[8] = {h0.x, h0.y, h0.z, h0.w, h1.x, h1.y, h1.z, h1.w};
#pragma unroll
      for (int i = 0; i < 8; ++i) {
        w.v[0][i] |= ((qh[i] >> (2 * t)) & 0x01010101) << 4;
        w.v[1][i] |= ((qh[i] >> (2 * t + 1)) & 0x01010101) << 4;
      }
    }
    const half2 dm = *reinterpret_cast<const half2*>(&h.x);
    w.d = __low2float(dm);
    w.dmin = __high2float(dm);
#pragma unroll
    for (int k = 0; k < 2; ++k) {
      int sc, m;
      scale_min_k4(2 * t + k, (unsigned)h.y, (unsigned)h.z, (unsigned)h.w, sc, m);
      w.sc[k] = sc;
      w.m[k] = (float)m;
    }
  }
  __device__ static void isums(const W& w, const int (&x)[UPT][8], int (&a)[UPT]) {
    a[0] = w.sc[0] * dot8(w.v[0], x[0]);
    a[1] = w.sc[1] * dot8(w.v[1], x[1]);
  }
  // The same integers from each unit's two 16-value half sums (the MMQ kernels' tensor-core dots).
  __device__ static void isums_from_halves(const W& w, const int (&h)[UPT][2], int (&a)[UPT]) {
    a[0] = w.sc[0] * (h[0][0] + h[0][1]);
    a[1] = w.sc[1] * (h[1][0] + h[1][1]);
  }
  __device__ static float combine(const W& w, const int (&a)[UPT], const float2 (&ds)[UPT]) {
    const float dot = fmaf(ds[0].x, (float)a[0], ds[1].x * (float)a[1]);
    const float mins = fmaf(w.m[0], ds[0].y, w.m[1] * ds[1].y);
    return w.d * dot - w.dmin * mins;
  }
  // Unit u's scale and min as floats, d * sc and dmin * m, from the block's 12 scale bytes.
  __device__ static void unit_scale(const uint8_t* blk, int u, float& d1, float& m1) {
    const uint8_t* s = blk + 4;
    int sc, m;
    if (u < 4) {
      sc = s[u] & 63;
      m = s[u + 4] & 63;
    } else {
      sc = (s[u + 4] & 0xF) | ((s[u - 4] >> 6) << 4);
      m = (s[u + 4] >> 4) | ((s[u] >> 6) << 4);
    }
    d1 = half_at(blk) * (float)sc;
    m1 = half_at(blk + 2) * (float)m;
  }
  __device__ static float value(const uint8_t* blk, int e) {
    const int u = e / 32, l = e % 32, j = u / 2;
    const uint8_t b = blk[(FIVE ? 48 : 16) + 32 * j + l];
    int q = (u & 1) ? (b >> 4) : (b & 15);
    if (FIVE) q += ((blk[16 + l] >> u) & 1) * 16;
    float d1, m1;
    unit_scale(blk, u, d1, m1);
    return d1 * (float)q - m1;
  }
};
using TQ4_K = TQK45<false>;
using TQ5_K = TQK45<true>;

// Q6_K: task t (0..3) = half h = t/2, c0 = t%2: units 4h + c0 (low nibbles of ql[64h+32c0..+32))
// and 4h + c0 + 2 (their high nibbles), both with qh[32h..32h+32). 210-byte blocks: 2-byte aligned.
struct TQ6_K {
  static constexpr int TYPE = Q6_K, BYTES = 210, QK = QK_K, TASKS = 4, UPT = 2;
  struct W { int v[2][8]; int sc[2][2]; float d; };
  __device__ static int unit(int t, int k) { return 4 * (t >> 1) + (t & 1) + 2 * k; }
  __device__ static void load(const uint8_t* blk, int t, W& w) {
    const int h = t >> 1, c0 = t & 1;
    int ql[8], qh[8];
    load_words_a2<8>(blk + 64 * h + 32 * c0, ql);
    load_words_a2<8>(blk + 128 + 32 * h, qh);
#pragma unroll
    for (int i = 0; i < 8; ++i) {
      const int lo = (ql[i] & 0x0F0F0F0F) | (((qh[i] >> (2 * c0)) & 0x03030303) << 4);
      const int hi = ((ql[i] >> 4) & 0x0F0F0F0F) | (((qh[i] >> (2 * c0 + 4)) & 0x03030303) << 4);
      w.v[0][i] = __vsub4(lo, 0x20202020);
      w.v[1][i] = __vsub4(hi, 0x20202020);
    }
    const int8_t* sc = reinterpret_cast<const int8_t*>(blk + 192 + 8 * h + 2 * c0);
    w.sc[0][0] = sc[0];
    w.sc[0][1] = sc[1];
    w.sc[1][0] = sc[4];
    w.sc[1][1] = sc[5];
    w.d = half_at(blk + 208);
  }
  __device__ static int dot_halves(const int (&v)[8], const int (&x)[8], int s_lo, int s_hi) {
    int lo = 0, hi = 0;
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      lo = __dp4a(v[i], x[i], lo);
      hi = __dp4a(v[i + 4], x[i + 4], hi);
    }
    return s_lo * lo + s_hi * hi;
  }
  __device__ static void isums(const W& w, const int (&x)[UPT][8], int (&a)[UPT]) {
    a[0] = dot_halves(w.v[0], x[0], w.sc[0][0], w.sc[0][1]);
    a[1] = dot_halves(w.v[1], x[1], w.sc[1][0], w.sc[1][1]);
  }
  __device__ static void isums_from_halves(const W& w, const int (&h)[UPT][2], int (&a)[UPT]) {
    a[0] = w.sc[0][0] * h[0][0] + w.sc[0][1] * h[0][1];
    a[1] = w.sc[1][0] * h[1][0] + w.sc[1][1] * h[1][1];
  }
  __device__ static float combine(const W& w, const int (&a)[UPT], const float2 (&ds)[UPT]) {
    return w.d * fmaf(ds[0].x, (float)a[0], ds[1].x * (float)a[1]);
  }
  __device__ static float value(const uint8_t* blk, int e) {
    const int h = e / 128, r = e % 128, c = r / 32, l = r % 32;
    const uint8_t b = blk[64 * h + 32 * (c & 1) + l];
    const int q = ((c >= 2 ? (b >> 4) : (b & 15)) | (((blk[128 + 32 * h + l] >> (2 * c)) & 3) << 4)) - 32;
    const int sc = (int8_t)blk[192 + 8 * h + 2 * c + l / 16];
    return (half_at(blk + 208) * (float)sc) * (float)q;
  }
};

// Eight consecutive values e0..e0+7 of a block (e0 a multiple of 8), each bit-identical to
// T::value: the prefill's dequantization, one thread per eight values. The K-quant traits have
// their own (one scale decode and one 8-byte read per eight values); the 32-value types share
// this one (their blocks are only 2-byte aligned, and a unit has one scale).
template <class T>
__device__ __forceinline__ void values8(const uint8_t* blk, int e0, float (&v)[8]) {
#pragma unroll
  for (int i = 0; i < 8; ++i) v[i] = T::value(blk, e0 + i);
}

template <bool FIVE>
__device__ __forceinline__ void values8_k45(const uint8_t* blk, int e0, float (&v)[8]) {
  const int u = e0 / 32, l0 = e0 % 32, j = u / 2;
  float d1, m1;
  TQK45<FIVE>::unit_scale(blk, u, d1, m1);
  // 16-byte aligned rows and 144/176-byte blocks: these 8 bytes are 8-byte aligned.
  const uint2 qs = *reinterpret_cast<const uint2*>(blk + (FIVE ? 48 : 16) + 32 * j + l0);
  uint2 qh = make_uint2(0, 0);
  if (FIVE) qh = *reinterpret_cast<const uint2*>(blk + 16 + l0);
#pragma unroll
  for (int i = 0; i < 8; ++i) {
    const unsigned b = ((i < 4 ? qs.x : qs.y) >> (8 * (i & 3))) & 0xFF;
    int q = (u & 1) ? (int)(b >> 4) : (int)(b & 15);
    if (FIVE) q += (int)(((((i < 4 ? qh.x : qh.y) >> (8 * (i & 3))) & 0xFF) >> u) & 1) * 16;
    v[i] = d1 * (float)q - m1;
  }
}
template <>
__device__ __forceinline__ void values8<TQ4_K>(const uint8_t* blk, int e0, float (&v)[8]) { values8_k45<false>(blk, e0, v); }
template <>
__device__ __forceinline__ void values8<TQ5_K>(const uint8_t* blk, int e0, float (&v)[8]) { values8_k45<true>(blk, e0, v); }
template <>
__device__ __forceinline__ void values8<TQ6_K>(const uint8_t* blk, int e0, float (&v)[8]) {
  const int h = e0 / 128, r = e0 % 128, c = r / 32, l0 = r % 32;
  const float f = half_at(blk + 208) * (float)(int8_t)blk[192 + 8 * h + 2 * c + l0 / 16];
  const uint8_t* ql = blk + 64 * h + 32 * (c & 1) + l0;
  const uint8_t* qh = blk + 128 + 32 * h + l0;
#pragma unroll
  for (int i = 0; i < 8; ++i) {
    const int q = ((c >= 2 ? (ql[i] >> 4) : (ql[i] & 15)) | (((qh[i] >> (2 * c)) & 3) << 4)) - 32;
    v[i] = f * (float)q;
  }
}

// Calls f(T{}) with the traits of the runtime type id (host side, to pick an instantiation);
// false when there is no kernel for that type.
template <class F>
inline bool dispatch_type(int type, F&& f) {
  switch (type) {
    case Q4_0: f(TQ4_0{}); return true;
    case Q5_0: f(TQ5_0{}); return true;
    case Q8_0: f(TQ8_0{}); return true;
    case Q4_K: f(TQ4_K{}); return true;
    case Q5_K: f(TQ5_K{}); return true;
    case Q6_K: f(TQ6_K{}); return true;
    default: return false;
  }
}

}  // namespace rbee
