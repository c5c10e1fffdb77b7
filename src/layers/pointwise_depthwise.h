#pragma once
// A depthwise convolution run as one step with the 1x1 convolutions around it (MobileNet's
// inverted residual blocks): the 1x1 expansion that only it reads, the 1x1 projection that
// alone reads it, and the residual Add of the projection. Bands of output rows go through the
// chain per thread: the expansion's rows into a window that stays in L2, the depthwise rows
// into a few rows' worth of scratch in L1/L2, and the projection writes the block's output.
// Neither the expanded tensor (16 -> 96 channels at 112x112 is 4.8 MB) nor the depthwise
// output goes to memory. Outputs equal the layers run one after the other, up to rounding.
#include "layers/conv2d.h"
#include "layers/depthwise_conv2d.h"

namespace chorus::layers {

// Whether `producer` feeding `consumer` can run fused (a pointwise Conv2D on small_gemm or
// packed_gemm, then a DepthwiseConv2D).
bool can_fuse_pointwise_depthwise(const Layer& producer, const Layer& consumer);
// Whether the depthwise layer `producer` feeding the pointwise `consumer` can run fused.
bool can_fuse_depthwise_pointwise(const Layer& producer, const Layer& consumer);

struct DepthwiseChain {
  const Conv2D* expand = nullptr;  // or null: the depthwise layer reads the input
  const DepthwiseConv2D* depthwise = nullptr;
  const Conv2D* project = nullptr;  // or null: the depthwise layer writes the output
  // Added to the projection's output before `add_activation` (needs the projection's
  // adds_residual_by_pixels()); or null.
  const Tensor* residual = nullptr;
  Activation add_activation;
};

// out = the chain applied to `in`, for a batch, across the compute threads.
void forward_depthwise_chain(const DepthwiseChain& chain, const Tensor& in, Tensor& out);

// out = dw(pw(in)).
inline void forward_pointwise_depthwise(const Conv2D& pw, const DepthwiseConv2D& dw, const Tensor& in, Tensor& out) {
  DepthwiseChain chain;
  chain.expand = &pw;
  chain.depthwise = &dw;
  forward_depthwise_chain(chain, in, out);
}

}  // namespace chorus::layers
