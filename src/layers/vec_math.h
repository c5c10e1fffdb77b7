#pragma once
// Elementary functions on VecW, for loops over many values (GELU's erf, softmax's exp) that libm
// would take one call per value.
#include <cstdint>
#include <cstring>

#include "layers/vec8.h"

namespace chorus::layers {

using VecI = std::int32_t __attribute__((vector_size(kVecWLanes * sizeof(std::int32_t))));

// exp(x) for x <= 0 (relative error under 2e-7; 0 below -87): range reduction to
// [-ln2/2, ln2/2] (Cody and Waite's two-part ln2) and a degree-6 Taylor polynomial.
inline VecW exp_nonpositive(VecW x) {
  x = x < -87.0f ? VecW{} - 87.0f : x;  // exp(-87) is near the smallest normal float
  // k = round(x / ln2): 0.5 - x / ln2 > 0, so the conversion's truncation is a floor.
  const VecI k = -__builtin_convertvector(0.5f - x * 1.44269504089f, VecI);
  const VecW kf = __builtin_convertvector(k, VecW);
  const VecW r = (x - kf * 0.693145751953125f) - kf * 1.42860682030941723212e-6f;
  VecW p = VecW{} + (1.0f / 720);
  p = p * r + (1.0f / 120);
  p = p * r + (1.0f / 24);
  p = p * r + (1.0f / 6);
  p = p * r + 0.5f;
  p = p * r + 1.0f;
  p = p * r + 1.0f;
  VecW scale;
  const VecI bits = (k + 127) << 23;
  std::memcpy(&scale, &bits, sizeof scale);
  return p * scale;
}

// v[i] = exp(v[i] - max) / sum over the n values, in place.
inline void softmax(float* v, int n) {
  float top = v[0];
  for (int i = 1; i < n; ++i) top = v[i] > top ? v[i] : top;
  VecW sums{};
  int i = 0;
  for (; i + kVecWLanes <= n; i += kVecWLanes) {
    const VecW e = exp_nonpositive(loadw(v + i) - top);
    storew(v + i, e);
    sums += e;
  }
  float sum = 0.0f;
  for (int l = 0; l < kVecWLanes; ++l) sum += sums[l];
  if (i < n) {  // the tail, padded with values whose exp is 0
    float tail[kVecWLanes];
    for (int l = 0; l < kVecWLanes; ++l) tail[l] = i + l < n ? v[i + l] - top : -100.0f;
    storew(tail, exp_nonpositive(loadw(tail)));
    for (int l = 0; i + l < n; ++l) sum += v[i + l] = tail[l];
  }
  const float inv = 1.0f / sum;
  for (int j = 0; j < n; ++j) v[j] *= inv;
}

}  // namespace chorus::layers
