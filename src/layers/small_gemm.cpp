#include "layers/small_gemm.h"

#include <algorithm>
#include <cstddef>

#include "layers/vec8.h"

namespace chorus::layers {

namespace {

// Above these the weights fall out of L1/L2 or sgemm's packing pays for itself
// (bench_layers BM_SmallGemm against BM_Conv2D's sgemm path).
constexpr int kMaxSmallK = 32;
constexpr int kMaxSmallFilters = 32;
constexpr int kMaxOtherSide = 1024;

// `Pixels` pixels x 8*`Vectors` filters from f0, accumulated in registers over all of k.
template <int Pixels, int Vectors>
inline void block(const float* __restrict in, int ldi, int k, const float* __restrict w, int filters, int f0,
                  const float* __restrict bias, float* __restrict out) {
  Vec8 acc[Pixels][Vectors];
  for (int v = 0; v < Vectors; ++v) {
    const Vec8 b = bias ? load8(bias + f0 + 8 * v) : Vec8{};
    for (int p = 0; p < Pixels; ++p) acc[p][v] = b;
  }
  for (int i = 0; i < k; ++i) {
    const float* wi = w + static_cast<std::size_t>(i) * filters + f0;
    Vec8 wv[Vectors];
    for (int v = 0; v < Vectors; ++v) wv[v] = load8(wi + 8 * v);
    for (int p = 0; p < Pixels; ++p) {
      const float a = in[static_cast<std::size_t>(p) * ldi + i];
      for (int v = 0; v < Vectors; ++v) acc[p][v] += a * wv[v];
    }
  }
  for (int p = 0; p < Pixels; ++p)
    for (int v = 0; v < Vectors; ++v) store8(out + static_cast<std::size_t>(p) * filters + f0 + 8 * v, acc[p][v]);
}

// The last filters % 8, one at a time.
template <int Pixels>
inline void tail(const float* __restrict in, int ldi, int k, const float* __restrict w, int filters, int f0,
                 const float* __restrict bias, float* __restrict out) {
  for (int f = f0; f < filters; ++f)
    for (int p = 0; p < Pixels; ++p) {
      float sum = bias ? bias[f] : 0.0f;
      for (int i = 0; i < k; ++i)
        sum += in[static_cast<std::size_t>(p) * ldi + i] * w[static_cast<std::size_t>(i) * filters + f];
      out[static_cast<std::size_t>(p) * filters + f] = sum;
    }
}

// All filters of `Pixels` pixels: 16 at a time, then 8, then one by one.
template <int Pixels>
inline void pixel_block(const float* in, int ldi, int k, const float* w, int filters, const float* bias, float* out) {
  int f0 = 0;
  for (; f0 + 16 <= filters; f0 += 16) block<Pixels, 2>(in, ldi, k, w, filters, f0, bias, out);
  for (; f0 + 8 <= filters; f0 += 8) block<Pixels, 1>(in, ldi, k, w, filters, f0, bias, out);
  tail<Pixels>(in, ldi, k, w, filters, f0, bias, out);
}

}  // namespace

bool prefer_small_gemm(int k, int filters) {
  return (k <= kMaxSmallK && filters <= kMaxOtherSide) || (filters <= kMaxSmallFilters && k <= kMaxOtherSide);
}

void small_gemm(const float* in, int ldi, int pixels, int k, const float* w, int filters, const float* bias,
                const Activation& act, float* out) {
  constexpr int kPixels = 6;
  int p = 0;
  for (; p + kPixels <= pixels; p += kPixels) {
    float* o = out + static_cast<std::size_t>(p) * filters;
    pixel_block<kPixels>(in + static_cast<std::size_t>(p) * ldi, ldi, k, w, filters, bias, o);
    act.apply(o, static_cast<std::size_t>(kPixels) * filters, filters);
  }
  for (; p < pixels; ++p) {
    float* o = out + static_cast<std::size_t>(p) * filters;
    pixel_block<1>(in + static_cast<std::size_t>(p) * ldi, ldi, k, w, filters, bias, o);
    act.apply(o, filters, filters);
  }
}

}  // namespace chorus::layers
