#pragma once
// Separable 2-D convolution (Keras SeparableConv2D): a depthwise convolution without bias
// followed by a 1x1 convolution with bias and activation. Weights: depthwise_kernel
// (kh, kw, in, multiplier), pointwise_kernel (1, 1, in*multiplier, filters), bias (filters).
#include "layers/conv2d.h"
#include "layers/depthwise_conv2d.h"

namespace chorus::layers {

struct SeparableConv2DSettings {
  DepthwiseConv2DSettings depthwise;  // use_bias and activation are ignored
  int filters = 1;
  bool use_bias = true;
  Activation activation;
};

class SeparableConv2D : public Layer {
 public:
  SeparableConv2D(std::string name, SeparableConv2DSettings settings);
  std::string type() const override { return "SeparableConv2D"; }

  std::vector<WeightSpec> weight_specs() const override;
  void set_weights(WeightMap weights) override;
  double macs() const override;
  void forward(const std::vector<const Tensor*>& in, Tensor& out) const override;
  Activation* fusable_activation() override;
  std::string describe() const override;
  RowWindow row_window() const override { return depthwise_.row_window(); }  // its depthwise part's
  RowWindow column_window() const override { return depthwise_.column_window(); }
  void fold_scale_shift(const std::vector<float>& scale, const std::vector<float>& shift);
  // As built (an activation fused since included), and the depthwise part's padding: a row
  // band makes its own variant with the band's padding (partition/row_bands).
  SeparableConv2DSettings settings() const;
  // Reads both parts' weights from `owner` (a variant for a row band of another height).
  void share_weights(const SeparableConv2D& owner);
  const Pads& pads() const { return depthwise_.pads(); }

 protected:
  Shape infer_shape(const std::vector<Shape>& in) override;

 private:
  DepthwiseConv2D depthwise_;
  Conv2D pointwise_;
};

}  // namespace chorus::layers
