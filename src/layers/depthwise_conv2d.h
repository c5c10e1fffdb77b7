#pragma once
// Depthwise 2-D convolution (Keras DepthwiseConv2D): each input channel convolved with its own
// depth_multiplier filters; output channel ci * depth_multiplier + m. Kernel in Keras order
// (kh, kw, in, depth_multiplier). A direct NHWC loop: channels innermost, so it vectorises.
#include <memory>
#include <utility>

#include "layers/conv2d.h"

namespace chorus::layers {

// A depthwise convolution's weights; band variants of one layer share them (share_weights).
struct DepthwiseConv2DWeights {
  AlignedVector<float> kernel;  // (kh, kw, in * depth_multiplier): output channel fastest
  AlignedVector<float> bias;
};

struct DepthwiseConv2DSettings {
  int kernel_h = 3, kernel_w = 3;
  int stride_h = 1, stride_w = 1;
  int dilation_h = 1, dilation_w = 1;
  int depth_multiplier = 1;
  Padding padding = Padding::valid;
  bool explicit_pads = false;
  Pads pads;
  bool use_bias = true;
  Activation activation;
};

class DepthwiseConv2D : public Layer {
 public:
  DepthwiseConv2D(std::string name, DepthwiseConv2DSettings settings);
  std::string type() const override { return "DepthwiseConv2D"; }
  const DepthwiseConv2DSettings& settings() const { return settings_; }
  const Pads& pads() const { return pads_; }

  std::vector<WeightSpec> weight_specs() const override;
  void set_weights(WeightMap weights) override;
  double macs() const override;
  void forward(const std::vector<const Tensor*>& in, Tensor& out) const override;
  Activation* fusable_activation() override { return &settings_.activation; }
  std::string describe() const override;
  RowWindow row_window() const override {
    return {RowWindow::Kind::window, settings_.kernel_h, settings_.stride_h, settings_.dilation_h, pads_.top};
  }
  RowWindow column_window() const override {
    return {RowWindow::Kind::window, settings_.kernel_w, settings_.stride_w, settings_.dilation_w, pads_.left};
  }
  void fold_scale_shift(const std::vector<float>& scale, const std::vector<float>& shift);
  // Reads the weights `owner` holds (same kernel, multiplier and channels; built), without a
  // copy: a variant for a row band of another height.
  void share_weights(const DepthwiseConv2D& owner);

  // Output rows [first_row, end_row) of one frame, from input rows stored from row in_row0 on
  // (`in` points at row in_row0; 0 for a whole frame), into rows stored from row out_row0 on
  // (`out` points at row out_row0). A fused producer hands a band of rows, a fused consumer
  // takes one.
  void forward_rows(const float* in, int in_row0, float* out, int first_row, int end_row, int out_row0 = 0) const;
  // The input rows [first, last) that output rows [first_row, end_row) read, clipped to the input.
  std::pair<int, int> input_rows(int first_row, int end_row) const;

 protected:
  Shape infer_shape(const std::vector<Shape>& in) override;

 private:
  DepthwiseConv2DSettings settings_;
  Pads pads_;
  std::shared_ptr<DepthwiseConv2DWeights> w_;  // this layer's, or shared with the one it shares them with
  std::string kernel_name_ = "depthwise_kernel";
  friend class SeparableConv2D;
};

}  // namespace chorus::layers
