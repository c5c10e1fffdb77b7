#include "layers/separable_conv2d.h"

#include "core/error.h"

namespace chorus::layers {

namespace {
DepthwiseConv2DSettings depthwise_part(DepthwiseConv2DSettings s) {
  s.use_bias = false;
  s.activation = Activation{};
  return s;
}
Conv2DSettings pointwise_part(const SeparableConv2DSettings& s) {
  Conv2DSettings p;
  p.filters = s.filters;
  p.use_bias = s.use_bias;
  p.activation = s.activation;
  return p;
}
}  // namespace

SeparableConv2D::SeparableConv2D(std::string name, SeparableConv2DSettings settings)
    : Layer(name),
      depthwise_(name + "/depthwise", depthwise_part(settings.depthwise)),
      pointwise_(name + "/pointwise", pointwise_part(settings)) {}

Shape SeparableConv2D::infer_shape(const std::vector<Shape>& in) {
  Shape mid = depthwise_.build(in);
  return pointwise_.build({mid});
}

std::vector<WeightSpec> SeparableConv2D::weight_specs() const {
  auto dw = depthwise_.weight_specs();
  auto pw = pointwise_.weight_specs();
  std::vector<WeightSpec> specs{dw[0], {"pointwise_kernel", pw[0].shape}};
  if (pw.size() > 1) specs.push_back(pw[1]);
  return specs;
}

void SeparableConv2D::set_weights(WeightMap weights) {
  auto specs = weight_specs();
  depthwise_.set_weights({{"depthwise_kernel", take_weight(weights, specs[0])}});
  WeightMap pw{{"kernel", take_weight(weights, specs[1])}};
  if (specs.size() > 2) pw["bias"] = take_weight(weights, specs[2]);
  pointwise_.set_weights(std::move(pw));
}

double SeparableConv2D::macs() const { return depthwise_.macs() + pointwise_.macs(); }

Activation* SeparableConv2D::fusable_activation() { return pointwise_.fusable_activation(); }

std::string SeparableConv2D::describe() const {
  return depthwise_.describe() + " + 1x1" +
         (pointwise_.settings().activation.is_linear() ? "" : ", " + pointwise_.settings().activation.str());
}

SeparableConv2DSettings SeparableConv2D::settings() const {
  SeparableConv2DSettings s;
  s.depthwise = depthwise_.settings();
  s.filters = pointwise_.settings().filters;
  s.use_bias = pointwise_.settings().use_bias;
  s.activation = pointwise_.settings().activation;
  return s;
}

void SeparableConv2D::share_weights(const SeparableConv2D& owner) {
  depthwise_.share_weights(owner.depthwise_);
  pointwise_.share_weights(owner.pointwise_);
}

void SeparableConv2D::fold_scale_shift(const std::vector<float>& scale, const std::vector<float>& shift) {
  pointwise_.fold_scale_shift(scale, shift);
}

void SeparableConv2D::forward(const std::vector<const Tensor*>& in, Tensor& out) const {
  // The depthwise result lives only between the two halves; a per-thread scratch avoids
  // an allocation per frame.
  thread_local Tensor middle;
  depthwise_.forward(in, middle);
  pointwise_.forward({&middle}, out);
}

}  // namespace chorus::layers
