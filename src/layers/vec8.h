#pragma once
// Floats as one value, for kernels that keep accumulators in registers: GCC's and Clang's
// generic vectors become one AVX register or two NEON ones, and unlike arrays of floats they
// stay in registers across long loops. Loads and stores are unaligned.
//
// Vec8 is eight floats on every target. VecW is the widest the build's target runs at full
// speed: 16 floats (one register) where the compiler may use AVX-512, which doubles what
// each multiply-add does on cores with 512-bit units (Zen 4/5, Xeon); Vec8 elsewhere.
#include <cstring>

#if defined(__AVX512F__)
#include <immintrin.h>
#endif

namespace chorus::layers {

using Vec8 = float __attribute__((vector_size(32)));

inline Vec8 load8(const float* p) {
  Vec8 v;
  std::memcpy(&v, p, sizeof v);
  return v;
}

inline void store8(float* p, Vec8 v) { std::memcpy(p, &v, sizeof v); }

#if defined(__AVX512F__)
constexpr int kVecWLanes = 16;
#else
constexpr int kVecWLanes = 8;
#endif
using VecW = float __attribute__((vector_size(kVecWLanes * sizeof(float))));

inline VecW loadw(const float* p) {
  VecW v;
  std::memcpy(&v, p, sizeof v);
  return v;
}

inline void storew(float* p, VecW v) { std::memcpy(p, &v, sizeof v); }

#if defined(__AVX512F__)
// The first n (1..16) floats of p, zeros after them; nothing past them is read.
inline VecW loadw_first(const float* p, int n) {
  return reinterpret_cast<VecW>(_mm512_maskz_loadu_ps(static_cast<__mmask16>((1u << n) - 1), p));
}
// Stores the first n (1..16) lanes of v; nothing past them is written.
inline void storew_first(float* p, VecW v, int n) {
  _mm512_mask_storeu_ps(p, static_cast<__mmask16>((1u << n) - 1), reinterpret_cast<__m512>(v));
}
#endif

}  // namespace chorus::layers
