#pragma once
// A direct kernel for the products sgemm runs poorly: convolutions whose inner size k (input
// channels x taps) or filter count is small, as in MobileNetV2's 16->96 expansions, its 144->24
// projections and its first 3x3 convolution (k = 27). sgemm spends more on packing and on
// passes over C than on arithmetic there; this kernel keeps a block of pixels x filters in
// registers across all of k and adds bias and activation before the block leaves the cache.
#include "layers/activation.h"

namespace chorus::layers {

// Whether small_gemm beats sgemm for `k` inputs and `filters` outputs per pixel.
bool prefer_small_gemm(int k, int filters);

// out[p * filters + f] = act(bias[f] + sum_i in[p * ldi + i] * w[i * filters + f]) for p in
// [0, pixels), f in [0, filters). `w` is k x filters, row-major (Chorus' kernel layout);
// `bias` may be null. Runs on the calling thread.
void small_gemm(const float* in, int ldi, int pixels, int k, const float* w, int filters, const float* bias,
                const Activation& act, float* out);

}  // namespace chorus::layers
