#include "layers/channel_affine.h"

#include <algorithm>
#include <cmath>

#include "core/parallel.h"

namespace chorus::layers {

namespace {
constexpr float kEpsilon = 1e-7f;  // Keras' backend.epsilon(), the floor of the deviation
}

ChannelAffine::ChannelAffine(std::string name, std::string keras_type, std::vector<float> scale,
                             std::vector<float> offset)
    : Layer(std::move(name)), type_(std::move(keras_type)), scale_(std::move(scale)), offset_(std::move(offset)) {}

std::unique_ptr<ChannelAffine> ChannelAffine::reciprocal(std::string name, std::string keras_type,
                                                         std::vector<float> c) {
  auto layer = std::make_unique<ChannelAffine>(std::move(name), std::move(keras_type), std::move(c),
                                               std::vector<float>{0.0f});
  layer->reciprocal_ = true;
  return layer;
}

std::unique_ptr<ChannelAffine> ChannelAffine::normalization_from_weights(std::string name, bool invert) {
  auto layer = std::make_unique<ChannelAffine>(std::move(name), "Normalization", std::vector<float>{1.0f},
                                               std::vector<float>{0.0f});
  layer->statistics_are_weights_ = true;
  layer->invert_ = invert;
  return layer;
}

std::unique_ptr<ChannelAffine> ChannelAffine::normalization(std::string name, const std::vector<float>& mean,
                                                            const std::vector<float>& variance, bool invert) {
  const std::size_t n = std::max(mean.size(), variance.size());
  std::vector<float> scale(n), offset(n);
  for (std::size_t i = 0; i < n; ++i) {
    const float m = mean[mean.size() == 1 ? 0 : i], v = variance[variance.size() == 1 ? 0 : i];
    const float deviation = std::max(std::sqrt(v), kEpsilon);
    scale[i] = invert ? deviation : 1.0f / deviation;
    offset[i] = invert ? m : -m * scale[i];
  }
  auto layer =
      std::make_unique<ChannelAffine>(std::move(name), "Normalization", std::move(scale), std::move(offset));
  layer->invert_ = invert;
  return layer;
}

Shape ChannelAffine::infer_shape(const std::vector<Shape>& in) {
  const int c = in[0].c;
  for (const auto* v : {&scale_, &offset_})
    if (v->size() != 1 && static_cast<int>(v->size()) != c)
      fail_layer("has ", v->size(), " values for an input of ", c, " channels (give one, or one per channel)");
  return in[0];
}

std::vector<WeightSpec> ChannelAffine::weight_specs() const {
  if (!statistics_are_weights_) return {};
  const int c = input_shapes()[0].c;
  return {{"mean", {c}}, {"variance", {c}}, {"count", {}}};
}

void ChannelAffine::set_weights(WeightMap weights) {
  if (!statistics_are_weights_) return;
  const auto specs = weight_specs();
  const std::vector<float> mean = take_weight(weights, specs[0]), variance = take_weight(weights, specs[1]);
  auto normalized = normalization(name(), mean, variance, invert_);
  scale_ = std::move(normalized->scale_);
  offset_ = std::move(normalized->offset_);
}

std::string ChannelAffine::describe() const {
  if (reciprocal_) return scale_.size() == 1 ? cat(scale_[0], " / x") : std::string("per channel / x");
  if (scale_.size() == 1 && offset_.size() == 1) return cat("x ", scale_[0], " + ", offset_[0]);
  return "per channel";
}

void ChannelAffine::forward(const std::vector<const Tensor*>& in, Tensor& out) const {
  const Tensor& x = *in[0];
  if (&out != &x) out.resize(x.frames(), x.shape());
  const int c = x.shape().c;
  const std::int64_t pixels = static_cast<std::int64_t>(x.size() / c);
  const bool per_channel_scale = scale_.size() > 1, per_channel_offset = offset_.size() > 1;
  parallel_range(pixels, std::max<std::int64_t>(1, 16384 / c), [&](std::int64_t p0, std::int64_t p1) {
    for (std::int64_t p = p0; p < p1; ++p) {
      const float* src = x.data() + p * c;
      float* dst = out.data() + p * c;
      if (reciprocal_) {
        for (int ch = 0; ch < c; ++ch)
          dst[ch] = scale_[per_channel_scale ? ch : 0] / src[ch] + offset_[per_channel_offset ? ch : 0];
        continue;
      }
      for (int ch = 0; ch < c; ++ch)
        dst[ch] = src[ch] * scale_[per_channel_scale ? ch : 0] + offset_[per_channel_offset ? ch : 0];
    }
  });
}

}  // namespace chorus::layers
