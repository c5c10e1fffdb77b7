#include "layers/batch_norm.h"

#include <algorithm>
#include <cmath>

#include "core/error.h"

namespace chorus::layers {

std::vector<WeightSpec> BatchNorm::weight_specs() const {
  const int c = input_shapes()[0].c;
  std::vector<WeightSpec> specs;
  if (settings_.scale) specs.push_back({"gamma", {c}});
  if (settings_.center) specs.push_back({"beta", {c}});
  specs.push_back({"moving_mean", {c}});
  specs.push_back({"moving_variance", {c}});
  return specs;
}

void BatchNorm::set_weights(WeightMap weights) {
  const int c = input_shapes()[0].c;
  std::vector<float> gamma(c, 1.0f), beta(c, 0.0f);
  for (const auto& spec : weight_specs()) {
    auto values = take_weight(weights, spec);
    if (spec.name == "gamma") gamma = values;
    if (spec.name == "beta") beta = values;
    if (spec.name == "moving_mean") shift_ = values;
    if (spec.name == "moving_variance") scale_ = values;
  }
  for (int i = 0; i < c; ++i) {
    if (scale_[i] + settings_.epsilon < 0) fail_layer("moving_variance[", i, "] is negative (", scale_[i], ")");
    float s = gamma[i] / std::sqrt(scale_[i] + settings_.epsilon);
    float t = beta[i] - shift_[i] * s;
    scale_[i] = s;
    shift_[i] = t;
  }
}

std::string BatchNorm::describe() const {
  return cat("eps ", settings_.epsilon, settings_.activation.is_linear() ? "" : ", " + settings_.activation.str());
}

void BatchNorm::forward(const std::vector<const Tensor*>& in, Tensor& out) const {
  if (&out != in[0]) {
    out.resize(in[0]->frames(), in[0]->shape());
    std::copy(in[0]->data(), in[0]->data() + in[0]->size(), out.data());
  }
  const int c = output_shape().c;
  float* o = out.data();
  const std::size_t pixels = out.size() / c;
  for (std::size_t p = 0; p < pixels; ++p)
    for (int ch = 0; ch < c; ++ch) o[p * c + ch] = o[p * c + ch] * scale_[ch] + shift_[ch];
  settings_.activation.apply(o, out.size(), c);
}

}  // namespace chorus::layers
