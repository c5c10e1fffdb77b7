#pragma once
// A 1x1 convolution and the depthwise convolution that alone reads it, run as one step
// (MobileNet's inverted residual blocks: 16 -> 96 channels at 112x112 is 4.8 MB that only the
// depthwise layer reads). Bands of the 1x1 layer's output rows are computed into a per-thread
// window that stays in L2, and the depthwise layer reads them there: the expanded tensor never
// goes to memory. Outputs equal the two layers run one after the other.
#include "layers/conv2d.h"
#include "layers/depthwise_conv2d.h"

namespace chorus::layers {

// Whether `producer` feeding `consumer` can run fused (a pointwise Conv2D on small_gemm or
// packed_gemm, then a DepthwiseConv2D).
bool can_fuse_pointwise_depthwise(const Layer& producer, const Layer& consumer);

// out = dw(pw(in)) for a batch, across the compute threads.
void forward_pointwise_depthwise(const Conv2D& pw, const DepthwiseConv2D& dw, const Tensor& in, Tensor& out);

}  // namespace chorus::layers
