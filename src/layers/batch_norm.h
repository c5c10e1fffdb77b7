#pragma once
// Batch normalisation at inference (Keras BatchNormalization) over the channel axis:
// y = gamma * (x - mean) / sqrt(var + epsilon) + beta, kept as one scale and shift per channel.
// The model optimiser folds it into the preceding convolution or dense layer when it can.
#include "layers/layer.h"

namespace chorus::layers {

struct BatchNormSettings {
  float epsilon = 1e-3f;
  bool center = true;  // has beta
  bool scale = true;   // has gamma
  Activation activation;  // fused by the optimiser
};

class BatchNorm : public Layer {
 public:
  BatchNorm(std::string name, BatchNormSettings settings) : Layer(std::move(name)), settings_(settings) {}
  std::string type() const override { return "BatchNormalization"; }
  bool takes_clips() const override { return true; }  // per channel: a clip is many pixels

  std::vector<WeightSpec> weight_specs() const override;
  void set_weights(WeightMap weights) override;
  double macs() const override { return static_cast<double>(output_shape().size()); }
  void forward(const std::vector<const Tensor*>& in, Tensor& out) const override;
  bool in_place() const override { return true; }
  Activation* fusable_activation() override { return &settings_.activation; }
  std::string describe() const override;

  // Per-channel multiplier and offset equivalent to this layer.
  const std::vector<float>& scale() const { return scale_; }
  const std::vector<float>& shift() const { return shift_; }
  const Activation& activation() const { return settings_.activation; }

 protected:
  Shape infer_shape(const std::vector<Shape>& in) override { return in[0]; }

 private:
  BatchNormSettings settings_;
  std::vector<float> scale_, shift_;
};

}  // namespace chorus::layers
