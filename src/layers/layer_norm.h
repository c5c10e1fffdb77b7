#pragma once
// Layer normalization over the last axis (Keras LayerNormalization, ONNX LayerNormalization and
// the ReduceMean/Sub/Pow/Sqrt/Div form older exporters write): each position's channels are
// brought to mean 0 and variance 1, then scaled by gamma and shifted by beta.
#include "layers/layer.h"

namespace chorus::layers {

struct LayerNormSettings {
  float epsilon = 1e-3f;  // Keras' default; PyTorch's is 1e-5, torchvision's ViT uses 1e-6
  bool center = true;     // has beta
  bool scale = true;      // has gamma
};

class LayerNormalization : public Layer {
 public:
  LayerNormalization(std::string name, LayerNormSettings settings);
  std::string type() const override { return "LayerNormalization"; }
  const LayerNormSettings& settings() const { return settings_; }

  std::vector<WeightSpec> weight_specs() const override;
  void set_weights(WeightMap weights) override;
  // Two passes for the statistics, one to write: about five operations per element.
  double macs() const override { return 5.0 * static_cast<double>(output_shape().size()); }
  void forward(const std::vector<const Tensor*>& in, Tensor& out) const override;
  bool in_place() const override { return true; }
  bool positionwise() const override { return true; }
  void forward_positions(const std::vector<const Tensor*>& in, Tensor& out, std::int64_t p0,
                         std::int64_t p1) const override;
  std::string describe() const override;

 protected:
  Shape infer_shape(const std::vector<Shape>& in) override { return in[0]; }

 private:
  LayerNormSettings settings_;
  std::vector<float> gamma_, beta_;
};

}  // namespace chorus::layers
