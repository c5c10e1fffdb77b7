#pragma once
// Local response normalisation across channels (AlexNet), in TensorFlow's form:
// y = x / (bias + alpha * sum_{|j-c| <= depth_radius} x_j^2) ^ beta.
// (Caffe and ONNX divide alpha by the window size; their importers convert.)
#include "layers/layer.h"

namespace chorus::layers {

struct LRNSettings {
  int depth_radius = 2;
  float bias = 1.0f;
  float alpha = 1e-4f;
  float beta = 0.75f;
};

class LRN : public Layer {
 public:
  LRN(std::string name, LRNSettings settings);
  std::string type() const override { return "LRN"; }
  double macs() const override { return static_cast<double>(output_shape().size()) * (2 * settings_.depth_radius + 3); }
  void forward(const std::vector<const Tensor*>& in, Tensor& out) const override;
  std::string describe() const override;

 protected:
  Shape infer_shape(const std::vector<Shape>& in) override { return in[0]; }

 private:
  LRNSettings settings_;
};

}  // namespace chorus::layers
