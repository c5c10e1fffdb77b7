#include "layers/dense.h"

#include "core/error.h"
#include "layers/gemm.h"

namespace chorus::layers {

Dense::Dense(std::string name, DenseSettings settings) : Layer(std::move(name)), settings_(settings) {
  if (settings_.units < 1) fail_layer("units must be positive, got ", settings_.units);
}

Shape Dense::infer_shape(const std::vector<Shape>& in) { return {in[0].h, in[0].w, settings_.units}; }

std::vector<WeightSpec> Dense::weight_specs() const {
  std::vector<WeightSpec> specs{{"kernel", {input_shapes()[0].c, settings_.units}}};
  if (settings_.use_bias) specs.push_back({"bias", {settings_.units}});
  return specs;
}

void Dense::set_weights(WeightMap weights) {
  auto specs = weight_specs();
  kernel_ = take_weight(weights, specs[0]);
  bias_ = settings_.use_bias ? take_weight(weights, specs[1]) : std::vector<float>{};
}

double Dense::macs() const {
  const Shape& i = input_shapes()[0];
  return static_cast<double>(i.h) * i.w * i.c * settings_.units;
}

std::string Dense::describe() const {
  return settings_.activation.is_linear() ? "" : settings_.activation.str();
}

void Dense::fold_scale_shift(const std::vector<float>& scale, const std::vector<float>& shift) {
  const int u = settings_.units;
  for (std::size_t i = 0; i < kernel_.size(); ++i) kernel_[i] *= scale[i % u];
  if (bias_.empty()) bias_.assign(u, 0.0f);
  for (int i = 0; i < u; ++i) bias_[i] = bias_[i] * scale[i] + shift[i];
  settings_.use_bias = true;
}

void Dense::forward(const std::vector<const Tensor*>& in, Tensor& out) const {
  const Tensor& x = *in[0];
  out.resize(x.frames(), output_shape());
  const int cin = input_shapes()[0].c, units = settings_.units;
  const int positions = x.frames() * input_shapes()[0].h * input_shapes()[0].w;
  gemm(units, positions, cin, kernel_.data(), units, x.data(), cin, out.data(), units);
  float* o = out.data();
  if (!bias_.empty())
    for (int p = 0; p < positions; ++p)
      for (int u = 0; u < units; ++u) o[static_cast<std::size_t>(p) * units + u] += bias_[u];
  settings_.activation.apply(o, out.size(), units);
}

}  // namespace chorus::layers
