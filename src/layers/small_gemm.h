#pragma once
// A direct kernel for convolutions whose weights fit in cache (k up to 256, k x filters up to
// 128 KB), reading them in place. Conv2D takes it where packed_gemm does not apply, k < 64 or
// fewer than 32 filters, on builds without AVX-512 (with it, packed_gemm's wider tiles won on
// every shape): MobileNetV2's first layer (k = 27), its 16 -> 96 and 32 -> 192
// expansions and its 24-filter projections. sgemm spends more there on packing both operands
// and on passes over C (zeroing, then bias, then the activation) than on arithmetic; this
// kernel keeps a tile of 6 pixels x 16 filters in registers across all of k, and finishes each
// block of pixels while it is in L2.
#include "layers/activation.h"

namespace chorus::layers {

// Whether small_gemm beats sgemm for `k` inputs and `filters` outputs per pixel (measured
// with bench_layers BM_PointwiseKernel).
bool prefer_small_gemm(int k, int filters);

// out[p * filters + f] = act(bias[f] + sum_i in[p * ldi + i] * w[i * filters + f]) for p in
// [0, pixels), f in [0, filters). `w` is k x filters, row-major (Chorus' kernel layout);
// `bias` may be null. Runs on the calling thread.
void small_gemm(const float* in, int ldi, int pixels, int k, const float* w, int filters, const float* bias,
                const Activation& act, float* out);

}  // namespace chorus::layers
