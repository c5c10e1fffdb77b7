#include "layers/layer_norm.h"

#include <cmath>

#include "core/parallel.h"

namespace chorus::layers {

LayerNormalization::LayerNormalization(std::string name, LayerNormSettings settings)
    : Layer(std::move(name)), settings_(settings) {
  if (!(settings_.epsilon >= 0.0f)) fail_layer("epsilon must be non-negative, got ", settings_.epsilon);
}

std::vector<WeightSpec> LayerNormalization::weight_specs() const {
  std::vector<WeightSpec> specs;
  const int c = input_shapes()[0].c;
  if (settings_.scale) specs.push_back({"gamma", {c}});
  if (settings_.center) specs.push_back({"beta", {c}});
  return specs;
}

void LayerNormalization::set_weights(WeightMap weights) {
  const int c = input_shapes()[0].c;
  for (const auto& spec : weight_specs()) (spec.name == "gamma" ? gamma_ : beta_) = take_weight(weights, spec);
  if (gamma_.empty()) gamma_.assign(c, 1.0f);
  if (beta_.empty()) beta_.assign(c, 0.0f);
}

std::string LayerNormalization::describe() const { return cat("eps ", settings_.epsilon); }

void LayerNormalization::forward(const std::vector<const Tensor*>& in, Tensor& out) const {
  const Tensor& x = *in[0];
  if (&out != &x) out.resize(x.frames(), output_shape());
  forward_positions(in, out, 0, static_cast<std::int64_t>(x.size() / output_shape().c));
}

void LayerNormalization::forward_positions(const std::vector<const Tensor*>& in, Tensor& out, std::int64_t first,
                                           std::int64_t last) const {
  const Tensor& x = *in[0];
  const int c = output_shape().c;
  const float* src = x.data();
  float* dst = out.data();
  const float* gamma = gamma_.data();
  const float* beta = beta_.data();
  const double eps = settings_.epsilon;
  parallel_range(last - first, 16, [&](std::int64_t p0, std::int64_t p1) {
    for (std::int64_t p = first + p0; p < first + p1; ++p) {
      const float* v = src + p * c;
      float* o = dst + p * c;
      // Two passes, the variance from centred values so that large activations do not cancel;
      // float sums in 16 lanes (the compiler vectorises them), each lane's error small.
      float lanes[16] = {};
      int i = 0;
      for (; i + 16 <= c; i += 16)
        for (int l = 0; l < 16; ++l) lanes[l] += v[i + l];
      double sum = 0.0;
      for (; i < c; ++i) sum += v[i];
      for (float x : lanes) sum += x;
      const float m = static_cast<float>(sum / c);
      float squares_lanes[16] = {};
      i = 0;
      for (; i + 16 <= c; i += 16)
        for (int l = 0; l < 16; ++l) squares_lanes[l] += (v[i + l] - m) * (v[i + l] - m);
      double squares = 0.0;
      for (; i < c; ++i) squares += (v[i] - m) * (v[i] - m);
      for (float x : squares_lanes) squares += x;
      const float inv = static_cast<float>(1.0 / std::sqrt(squares / c + eps));
      for (i = 0; i < c; ++i) o[i] = (v[i] - m) * inv * gamma[i] + beta[i];
    }
  });
}

}  // namespace chorus::layers
