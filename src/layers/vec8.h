#pragma once
// Floats as one value, for kernels that keep accumulators in registers: GCC's and Clang's
// generic vectors become one AVX register or two NEON ones, and unlike arrays of floats they
// stay in registers across long loops. Loads and stores are unaligned.
//
// Vec8 is eight floats on every target. VecW is the widest the build's target runs at full
// speed: 16 floats (one register) where the compiler may use AVX-512, which doubles what
// each multiply-add does on cores with 512-bit units (Zen 4/5, Xeon); Vec8 elsewhere.
#include <cstring>

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

}  // namespace chorus::layers
