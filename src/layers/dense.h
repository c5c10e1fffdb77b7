#pragma once
// Fully connected layer (Keras Dense) on the last axis: every (row, column) position of the
// input is mapped from `in` to `units` values, so on a flattened input it is the usual
// matrix-vector product. Kernel in Keras order (in, units) = column-major (units x in).
#include "layers/layer.h"

namespace chorus::layers {

struct DenseSettings {
  int units = 1;
  bool use_bias = true;
  Activation activation;
};

class Dense : public Layer {
 public:
  Dense(std::string name, DenseSettings settings);
  std::string type() const override { return "Dense"; }
  const DenseSettings& settings() const { return settings_; }

  std::vector<WeightSpec> weight_specs() const override;
  void set_weights(WeightMap weights) override;
  double macs() const override;
  void forward(const std::vector<const Tensor*>& in, Tensor& out) const override;
  Activation* fusable_activation() override { return &settings_.activation; }
  std::string describe() const override;
  void fold_scale_shift(const std::vector<float>& scale, const std::vector<float>& shift);

 protected:
  Shape infer_shape(const std::vector<Shape>& in) override;

 private:
  DenseSettings settings_;
  std::vector<float> kernel_;
  std::vector<float> bias_;
};

}  // namespace chorus::layers
