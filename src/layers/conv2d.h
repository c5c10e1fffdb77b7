#pragma once
// 2-D convolution (Keras Conv2D): strides, valid/same/explicit padding, dilation, groups,
// bias and a fused activation. Kernel in Keras order (kh, kw, in/groups, filters), which read
// column-major is the (filters x kh*kw*in/groups) matrix the GEMM needs, so it is used as stored.
#include "layers/layer.h"

namespace chorus::layers {

struct Conv2DSettings {
  int filters = 1;
  int kernel_h = 1, kernel_w = 1;
  int stride_h = 1, stride_w = 1;
  int dilation_h = 1, dilation_w = 1;
  Padding padding = Padding::valid;
  bool explicit_pads = false;  // use `pads` instead of `padding` (ONNX, spatial tiles)
  Pads pads;
  int groups = 1;
  bool use_bias = true;
  Activation activation;
};

class Conv2D : public Layer {
 public:
  Conv2D(std::string name, Conv2DSettings settings);
  std::string type() const override { return "Conv2D"; }
  const Conv2DSettings& settings() const { return settings_; }
  const Pads& pads() const { return pads_; }

  std::vector<WeightSpec> weight_specs() const override;
  void set_weights(WeightMap weights) override;
  double macs() const override;
  void forward(const std::vector<const Tensor*>& in, Tensor& out) const override;
  Activation* fusable_activation() override { return &settings_.activation; }
  std::string describe() const override;

  // Folds a per-output-channel affine map (a batch normalisation) into kernel and bias.
  void fold_scale_shift(const std::vector<float>& scale, const std::vector<float>& shift);

 protected:
  Shape infer_shape(const std::vector<Shape>& in) override;

 private:
  bool is_pointwise() const;
  void forward_im2col(const float* in, float* out) const;

  Conv2DSettings settings_;
  Pads pads_;
  std::vector<float> kernel_;  // filters x (kh*kw*in/groups), column-major
  std::vector<float> bias_;    // filters, or empty
};

}  // namespace chorus::layers
