#pragma once
// Pooling over rows and columns in NHWC, channels innermost. `same` padding follows
// TensorFlow: padded cells never win a max and are left out of an average's count.
#include "layers/layer.h"

namespace chorus::layers {

enum class PoolKind { max, average };

struct Pool2DSettings {
  PoolKind kind = PoolKind::max;
  int pool_h = 2, pool_w = 2;
  int stride_h = 2, stride_w = 2;
  Padding padding = Padding::valid;
  bool explicit_pads = false;  // ONNX pads / spatial tiles
  Pads pads;
  bool count_include_pad = false;  // ONNX AveragePool option
};

class Pool2D : public Layer {
 public:
  Pool2D(std::string name, Pool2DSettings settings);
  std::string type() const override {
    return settings_.kind == PoolKind::max ? "MaxPooling2D" : "AveragePooling2D";
  }
  const Pool2DSettings& settings() const { return settings_; }
  const Pads& pads() const { return pads_; }
  double macs() const override;
  void forward(const std::vector<const Tensor*>& in, Tensor& out) const override;
  std::string describe() const override;
  RowWindow row_window() const override {
    return {RowWindow::Kind::window, settings_.pool_h, settings_.stride_h, 1, pads_.top};
  }
  RowWindow column_window() const override {
    return {RowWindow::Kind::window, settings_.pool_w, settings_.stride_w, 1, pads_.left};
  }

 protected:
  Shape infer_shape(const std::vector<Shape>& in) override;

 private:
  Pool2DSettings settings_;
  Pads pads_;
};

// Sums (average) or maxima (max) of `positions` vectors of `channels` floats that follow each
// other from `src`, into `dst`: the global poolings' loop, also a split-spatial stage's pool of
// its rows and member 0's join of the members' pools.
void pool_positions(const float* src, std::size_t positions, int channels, PoolKind kind, float* dst);

// GlobalAveragePooling2D / GlobalMaxPooling2D: (h, w, c) -> (c). The 1-D poolings over a (1, L, D)
// sequence are the same loop; `dims` only names them as the model file did.
class GlobalPool2D : public Layer {
 public:
  GlobalPool2D(std::string name, PoolKind kind, int dims = 2) : Layer(std::move(name)), kind_(kind), dims_(dims) {}
  PoolKind kind() const { return kind_; }
  int dims() const { return dims_; }
  std::string type() const override {
    return std::string(kind_ == PoolKind::max ? "GlobalMaxPooling" : "GlobalAveragePooling") + std::to_string(dims_) +
           "D";
  }
  double macs() const override { return static_cast<double>(input_shapes()[0].size()); }
  void forward(const std::vector<const Tensor*>& in, Tensor& out) const override;

 protected:
  Shape infer_shape(const std::vector<Shape>& in) override { return {1, 1, in[0].c}; }

 private:
  PoolKind kind_;
  int dims_;
};

}  // namespace chorus::layers
