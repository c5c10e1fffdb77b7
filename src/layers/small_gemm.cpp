#include "layers/small_gemm.h"

#include <algorithm>
#include <cstddef>

#include "layers/vec8.h"

namespace chorus::layers {

namespace {

// Where small_gemm wins (bench_layers BM_PointwiseKernel, and per-layer times of ResNet-50 and
// MobileNetV2): a 16-filter panel of the weights (k x 16) must stay in L1 beside a tile's
// inputs, and all the weights (up to 128 KB) in L2 beside a block. ResNet-50's 64 <-> 256 1x1
// layers ran 1.8-2.8 -> 1.4-1.7 ms; with k = 512 (1.6 -> 1.9 ms) or 128 x 512 weights (1.45 ->
// 1.7 ms) it lost to sgemm.
constexpr int kMaxK = 256;
constexpr std::size_t kMaxWeights = 32 * 1024;
// Pixels accumulated at once (12 of AVX2's 16 registers with two vectors of filters).
constexpr int kTile = 6;
// Floats of a block's inputs and outputs (128 KB), in L2 beside the weights.
constexpr std::size_t kBlockFloats = 32 * 1024;
// Weights up to this many floats (16 KB) stay in a 32 KB L1 beside a tile's inputs.
constexpr std::size_t kL1Floats = 4 * 1024;

// `Pixels` pixels x 8*`Vectors` filters from f0, accumulated in registers over all of k.
// Clamping activations (relu, relu6) applied in registers before the store.
struct Clamp {
  bool on;
  Vec8 lo, hi;
};

template <int Pixels, int Vectors>
inline void block(const float* __restrict in, int ldi, int k, const float* __restrict w, int filters, int f0,
                  const float* __restrict bias, const Clamp& clamp, float* __restrict out) {
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
    for (int v = 0; v < Vectors; ++v) {
      Vec8 a = acc[p][v];
      if (clamp.on) {
        a = a < clamp.lo ? clamp.lo : a;
        a = a > clamp.hi ? clamp.hi : a;
      }
      store8(out + static_cast<std::size_t>(p) * filters + f0 + 8 * v, a);
    }
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

// Filters [f0, f0 + 8 * Vectors) of `pixels` pixels, in tiles of kTile pixels.
template <int Vectors>
void filter_panel(const float* in, int ldi, int pixels, int k, const float* w, int filters, int f0, const float* bias,
                  const Clamp& clamp, float* out) {
  int p = 0;
  for (; p + kTile <= pixels; p += kTile)
    block<kTile, Vectors>(in + static_cast<std::size_t>(p) * ldi, ldi, k, w, filters, f0, bias, clamp,
                          out + static_cast<std::size_t>(p) * filters);
  // The last 1-5 pixels in one narrower tile: one at a time, each would wait on the latency of
  // its few multiply-adds.
  const float* tail_in = in + static_cast<std::size_t>(p) * ldi;
  float* tail_out = out + static_cast<std::size_t>(p) * filters;
  switch (pixels - p) {
    case 5:
      block<5, Vectors>(tail_in, ldi, k, w, filters, f0, bias, clamp, tail_out);
      break;
    case 4:
      block<4, Vectors>(tail_in, ldi, k, w, filters, f0, bias, clamp, tail_out);
      break;
    case 3:
      block<3, Vectors>(tail_in, ldi, k, w, filters, f0, bias, clamp, tail_out);
      break;
    case 2:
      block<2, Vectors>(tail_in, ldi, k, w, filters, f0, bias, clamp, tail_out);
      break;
    case 1:
      block<1, Vectors>(tail_in, ldi, k, w, filters, f0, bias, clamp, tail_out);
      break;
    default:
      break;
  }
}

}  // namespace

bool prefer_small_gemm(int k, int filters) {
  return k <= kMaxK && static_cast<std::size_t>(k) * filters <= kMaxWeights;
}

void small_gemm(const float* in, int ldi, int pixels, int k, const float* w, int filters, const float* bias,
                const Activation& act, float* out) {
  // Pixels per block: its inputs and outputs stay in L2 while each 16-filter panel of the
  // weights, in L1, passes over it tile by tile. Weights that fit in L1 whole need no blocks:
  // one tile at a time then writes each pixel's outputs at once (16 -> 96: 52 against 48 GFLOP/s).
  float lo = 0.0f, hi = 0.0f;
  const Clamp clamp{act.as_clamp(lo, hi), Vec8{} + lo, Vec8{} + hi};
  const bool weights_in_l1 = static_cast<std::size_t>(k) * filters <= kL1Floats;
  const int block =
      weights_in_l1 ? kTile : std::max(kTile, static_cast<int>(kBlockFloats / (k + filters)) / kTile * kTile);
  for (int p0 = 0; p0 < pixels; p0 += block) {
    const int n = std::min(block, pixels - p0);
    const float* block_in = in + static_cast<std::size_t>(p0) * ldi;
    float* block_out = out + static_cast<std::size_t>(p0) * filters;
    int f0 = 0;
    for (; f0 + 16 <= filters; f0 += 16) filter_panel<2>(block_in, ldi, n, k, w, filters, f0, bias, clamp, block_out);
    for (; f0 + 8 <= filters; f0 += 8) filter_panel<1>(block_in, ldi, n, k, w, filters, f0, bias, clamp, block_out);
    const int vector_filters = f0;
    for (int p = 0; p < n && f0 < filters; ++p)
      tail<1>(block_in + static_cast<std::size_t>(p) * ldi, ldi, k, w, filters, f0, bias,
              block_out + static_cast<std::size_t>(p) * filters);
    if (!clamp.on) {
      act.apply(block_out, static_cast<std::size_t>(n) * filters, filters);
    } else if (vector_filters < filters) {  // the last filters % 8, computed one at a time
      for (int p = 0; p < n; ++p)
        for (int f = vector_filters; f < filters; ++f) {
          float& x = block_out[static_cast<std::size_t>(p) * filters + f];
          x = std::min(hi, std::max(lo, x));
        }
    }
  }
}

}  // namespace chorus::layers
