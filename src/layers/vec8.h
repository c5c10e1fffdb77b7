#pragma once
// Eight floats as one value, for kernels that keep accumulators in registers: GCC's and
// Clang's generic vectors become one AVX register or two NEON ones, and unlike arrays of floats
// they stay in registers across long loops. Loads and stores are unaligned.
#include <cstring>

namespace chorus::layers {

using Vec8 = float __attribute__((vector_size(32)));

inline Vec8 load8(const float* p) {
  Vec8 v;
  std::memcpy(&v, p, sizeof v);
  return v;
}

inline void store8(float* p, Vec8 v) { std::memcpy(p, &v, sizeof v); }

}  // namespace chorus::layers
