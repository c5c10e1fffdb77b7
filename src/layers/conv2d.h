#pragma once
// 2-D convolution (Keras Conv2D): strides, valid/same/explicit padding, dilation, groups,
// bias and a fused activation. Kernel in Keras order (kh, kw, in/groups, filters), which read
// column-major is the (filters x kh*kw*in/groups) matrix the GEMM needs, so it is used as stored.
#include <memory>

#include "layers/layer.h"

namespace chorus::layers {

class PackedWeights;
class Winograd;

// A convolution's weights in the form its path reads them. Variants of one layer for row bands
// of other heights share them (Conv2D::share_weights), so a band's edges and interior computed
// apart cost no second copy.
struct Conv2DWeights {
  std::vector<float> kernel;              // filters x (kh*kw*in/groups), column-major; empty once winograd holds it
  std::unique_ptr<Winograd> winograd;     // the transformed kernel, for 3x3 and 5x5 stride-1 layers that pay
  std::unique_ptr<PackedWeights> packed;  // the kernel packed for packed_gemm; empty kernel then
  bool use_direct_kernel = false;         // small_gemm or packed_gemm instead of sgemm
  std::vector<float> bias;                // filters, or empty
};

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
  ~Conv2D() override;
  std::string type() const override { return "Conv2D"; }
  const Conv2DSettings& settings() const { return settings_; }
  const Pads& pads() const { return pads_; }
  // Output tile of the Winograd path the loaded kernel took (2 or 4), or 0 for im2col/GEMM.
  int winograd_tile() const;

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

  // Folds a per-output-channel affine map (a batch normalisation) into kernel and bias.
  void fold_scale_shift(const std::vector<float>& scale, const std::vector<float>& shift);
  // Reads the weights `owner` holds (same filters, kernel, groups and input channels; built),
  // without a copy. Its path follows the owner's (Winograd, packed or plain), whatever this
  // layer's own height would have chosen.
  void share_weights(const Conv2D& owner);

  // Whether forward_pixels applies: a 1x1 stride-1 convolution through small_gemm or packed_gemm.
  bool runs_by_pixels() const { return is_pointwise() && w_->use_direct_kernel; }
  // The outputs of `count` consecutive pixels of NHWC input, bias and activation included (a
  // fused consumer asks for a band of rows at a time, a fused producer hands one). With
  // `residual`, out = act(conv(in) + residual) instead (needs adds_residual_by_pixels()).
  void forward_pixels(const float* in, int count, float* out, const float* residual = nullptr,
                      const Activation* act = nullptr) const {
    multiply_direct(in, count, out, residual, act);
  }
  // Whether forward_adding applies: a 1x1 stride-1 convolution through packed_gemm, with no
  // activation of its own.
  bool adds_residual_by_pixels() const;
  // out = act(conv(in) + residual) in one pass (a residual connection's Add fused into its
  // producer: the sum is made while each tile is in registers).
  void forward_adding(const Tensor& in, const Tensor& residual, const Activation& act, Tensor& out) const;

 protected:
  Shape infer_shape(const std::vector<Shape>& in) override;

 private:
  bool is_pointwise() const;
  // Winograd output tile (2 or 4) this layer's geometry and channels call for, 0 for im2col.
  int choose_winograd_tile() const;
  void forward_im2col(const float* in, float* out) const;
  // im2col of `count` output pixels from p0 for one group: k x count, column-major.
  void gather_columns(const float* in, int group, int p0, int count, float* cols) const;
  // Whether multiply_direct of `count` pixels shares the filters out among the threads rather
  // than being given a range of pixels per thread.
  bool splits_by_filters(int count, const Activation& activation) const;
  // The group's output channels of `count` pixels (out points at the first) = W_g * cols.
  void multiply_group(int group, const float* cols, int count, float* out) const;
  // The same through small_gemm or packed_gemm, with bias and activation (one group only);
  // `cols` has one row of k inputs per pixel, which is also what a 1x1 convolution's NHWC
  // input is. With `residual` (laid out as `out`) it is added before the activation, and `act`
  // replaces the layer's own (packed_gemm only).
  void multiply_direct(const float* cols, int count, float* out, const float* residual = nullptr,
                       const Activation* act = nullptr) const;
  // Adds the bias and applies the activation to `pixels` output pixels (NHWC), while in cache.
  void finish_block(float* block, int pixels) const;

  Conv2DSettings settings_;
  Pads pads_;
  std::shared_ptr<Conv2DWeights> w_;  // this layer's, or shared with the one it shares them with
};

}  // namespace chorus::layers
