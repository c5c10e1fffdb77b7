#pragma once
// y = x * scale + offset per channel: Keras' Rescaling (constants in its config) and
// Normalization (y = (x - mean) / max(sqrt(variance), 1e-7), or with `invert` the way back,
// y = mean + x * max(sqrt(variance), 1e-7); the statistics from its config or, after adapt(),
// from its weights: mean, variance and count).
#include "layers/layer.h"

namespace chorus::layers {

class ChannelAffine : public Layer {
 public:
  // `scale` and `offset` hold one value for every channel, or one per channel.
  ChannelAffine(std::string name, std::string keras_type, std::vector<float> scale, std::vector<float> offset);
  // A Normalization whose statistics are weights, turned into scale and offset at load.
  static std::unique_ptr<ChannelAffine> normalization_from_weights(std::string name, bool invert = false);
  // The same from statistics (one value, or one per channel).
  static std::unique_ptr<ChannelAffine> normalization(std::string name, const std::vector<float>& mean,
                                                      const std::vector<float>& variance, bool invert = false);
  // c / x (Keras 3's TrueDivide with the constant first): scale / x, no offset.
  static std::unique_ptr<ChannelAffine> reciprocal(std::string name, std::string keras_type, std::vector<float> c);

  std::string type() const override { return type_; }
  bool takes_clips() const override { return true; }
  std::vector<WeightSpec> weight_specs() const override;
  void set_weights(WeightMap weights) override;
  double macs() const override { return static_cast<double>(output_shape().size()); }
  void forward(const std::vector<const Tensor*>& in, Tensor& out) const override;
  bool in_place() const override { return true; }
  std::string describe() const override;

 protected:
  Shape infer_shape(const std::vector<Shape>& in) override;

 private:
  std::string type_;
  std::vector<float> scale_, offset_;
  bool statistics_are_weights_ = false;
  bool invert_ = false;      // a Normalization's way back
  bool reciprocal_ = false;  // scale / x + offset instead of x * scale + offset
};

}  // namespace chorus::layers
