#pragma once
// 3-D layers over clips (NDHWC: depth/time, rows, columns, channels), as Keras has them for
// video models such as C3D: Conv3D, MaxPooling3D / AveragePooling3D, ZeroPadding3D and the
// global poolings. Each window axis follows TensorFlow's valid/same geometry (axis_geometry).
#include <array>

#include "layers/layer.h"
#include "layers/pooling.h"

namespace chorus::layers {

// A window over depth, rows and columns.
struct Window3D {
  int kernel[3] = {1, 1, 1};  // depth, rows, columns
  int stride[3] = {1, 1, 1};
  int dilation[3] = {1, 1, 1};
  Padding padding = Padding::valid;
  bool explicit_pads = false;  // pad_before / pad_after instead of `padding` (ONNX)
  int pad_before[3] = {0, 0, 0}, pad_after[3] = {0, 0, 0};
};

// A window's output size and its padding before and after on each axis.
struct Geometry3D {
  int out[3] = {0, 0, 0};
  int pad[3] = {0, 0, 0};
  int pad_after[3] = {0, 0, 0};
};
Geometry3D window_geometry_3d(Shape in, const Window3D& window);

struct Conv3DSettings {
  int filters = 1;
  Window3D window;
  bool use_bias = true;
  Activation activation;
};

// Keras Conv3D. Its kernel (kd, kh, kw, in, filters), read column-major, is the (filters x
// kd*kh*kw*in) matrix the GEMM needs, so it is used as stored (as Conv2D's is): each output
// pixel's input window is gathered into a column (im2col) and the columns multiplied at once.
class Conv3D : public Layer {
 public:
  Conv3D(std::string name, Conv3DSettings settings) : Layer(std::move(name)), settings_(std::move(settings)) {}
  std::string type() const override { return "Conv3D"; }
  bool takes_clips() const override { return true; }
  const Conv3DSettings& settings() const { return settings_; }
  const Geometry3D& geometry() const { return geometry_; }
  std::vector<WeightSpec> weight_specs() const override;
  void set_weights(WeightMap weights) override;
  double macs() const override;
  void forward(const std::vector<const Tensor*>& in, Tensor& out) const override;
  Activation* fusable_activation() override { return &settings_.activation; }
  std::string describe() const override;
  RowWindow row_window() const override {  // axis 1 of (depth, rows, columns)
    const Window3D& w = settings_.window;
    return {RowWindow::Kind::window, w.kernel[1], w.stride[1], w.dilation[1], geometry_.pad[1]};
  }
  RowWindow column_window() const override {
    const Window3D& w = settings_.window;
    return {RowWindow::Kind::window, w.kernel[2], w.stride[2], w.dilation[2], geometry_.pad[2]};
  }

 protected:
  Shape infer_shape(const std::vector<Shape>& in) override;

 private:
  // Input windows of output pixels [p0, p0 + count) of one frame, one column of k values each.
  void gather_columns(const float* in, std::int64_t p0, int count, float* cols) const;

  Conv3DSettings settings_;
  Geometry3D geometry_;
  std::vector<float> kernel_, bias_;
};

// MaxPooling3D / AveragePooling3D (padded cells never win a max and are left out of an
// average's count, as in TensorFlow).
class Pool3D : public Layer {
 public:
  Pool3D(std::string name, PoolKind kind, Window3D window)
      : Layer(std::move(name)), kind_(kind), window_(window) {}
  std::string type() const override { return kind_ == PoolKind::max ? "MaxPooling3D" : "AveragePooling3D"; }
  bool takes_clips() const override { return true; }
  PoolKind kind() const { return kind_; }
  const Window3D& window() const { return window_; }
  const Geometry3D& geometry() const { return geometry_; }
  double macs() const override;
  void forward(const std::vector<const Tensor*>& in, Tensor& out) const override;
  std::string describe() const override;
  RowWindow row_window() const override {
    return {RowWindow::Kind::window, window_.kernel[1], window_.stride[1], 1, geometry_.pad[1]};
  }
  RowWindow column_window() const override {
    return {RowWindow::Kind::window, window_.kernel[2], window_.stride[2], 1, geometry_.pad[2]};
  }

 protected:
  Shape infer_shape(const std::vector<Shape>& in) override;

 private:
  PoolKind kind_;
  Window3D window_;
  Geometry3D geometry_;
};

// GlobalAveragePooling3D / GlobalMaxPooling3D: (d, h, w, c) -> (c).
class GlobalPool3D : public Layer {
 public:
  GlobalPool3D(std::string name, PoolKind kind) : Layer(std::move(name)), kind_(kind) {}
  PoolKind kind() const { return kind_; }
  std::string type() const override {
    return kind_ == PoolKind::max ? "GlobalMaxPooling3D" : "GlobalAveragePooling3D";
  }
  bool takes_clips() const override { return true; }
  double macs() const override { return static_cast<double>(input_shapes()[0].size()); }
  void forward(const std::vector<const Tensor*>& in, Tensor& out) const override;

 protected:
  Shape infer_shape(const std::vector<Shape>& in) override { return {1, 1, in[0].c}; }

 private:
  PoolKind kind_;
};

// ZeroPadding3D: zeros before and after on depth, rows and columns.
class ZeroPadding3D : public Layer {
 public:
  // pads: {depth before, depth after, top, bottom, left, right}
  ZeroPadding3D(std::string name, std::array<int, 6> pads) : Layer(std::move(name)), pads_(pads) {}
  std::string type() const override { return "ZeroPadding3D"; }
  bool takes_clips() const override { return true; }
  const std::array<int, 6>& pads() const { return pads_; }
  void forward(const std::vector<const Tensor*>& in, Tensor& out) const override;
  std::string describe() const override;
  RowWindow row_window() const override { return {RowWindow::Kind::shift, 1, 1, 1, pads_[2]}; }
  RowWindow column_window() const override { return {RowWindow::Kind::shift, 1, 1, 1, pads_[4]}; }

 protected:
  Shape infer_shape(const std::vector<Shape>& in) override;

 private:
  std::array<int, 6> pads_;
};

}  // namespace chorus::layers
