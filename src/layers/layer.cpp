#include "layers/layer.h"

#include <algorithm>
#include <limits>

#include "core/error.h"

namespace chorus::layers {

std::size_t WeightSpec::count() const {
  std::size_t n = 1;
  for (int d : shape) n *= static_cast<std::size_t>(d);
  return n;
}

std::string WeightSpec::shape_str() const {
  std::string s = "(";
  for (std::size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + (shape.size() == 1 ? ",)" : ")");
}

AxisGeometry axis_geometry(int in, int kernel, int stride, int dilation, Padding padding) {
  int effective = (kernel - 1) * dilation + 1;
  AxisGeometry g;
  if (padding == Padding::valid) {
    g.out = in >= effective ? (in - effective) / stride + 1 : 0;
  } else {
    g.out = (in + stride - 1) / stride;
    int total = std::max((g.out - 1) * stride + effective - in, 0);
    g.pad_before = total / 2;
    g.pad_after = total - g.pad_before;
  }
  return g;
}

WindowGeometry window_geometry(Shape in, const Window2D& w) {
  WindowGeometry g;
  if (w.explicit_pads) {
    auto out = [](int size, int before, int after, int kernel, int stride, int dilation) {
      const int padded = size + before + after, effective = (kernel - 1) * dilation + 1;
      return padded >= effective ? (padded - effective) / stride + 1 : 0;
    };
    g.out_h = out(in.h, w.pads.top, w.pads.bottom, w.kernel_h, w.stride_h, w.dilation_h);
    g.out_w = out(in.w, w.pads.left, w.pads.right, w.kernel_w, w.stride_w, w.dilation_w);
    g.pads = w.pads;
    return g;
  }
  auto gh = axis_geometry(in.h, w.kernel_h, w.stride_h, w.dilation_h, w.padding);
  auto gw = axis_geometry(in.w, w.kernel_w, w.stride_w, w.dilation_w, w.padding);
  g.out_h = gh.out;
  g.out_w = gw.out;
  g.pads = {gh.pad_before, gh.pad_after, gw.pad_before, gw.pad_after};
  return g;
}

Shape Layer::build(const std::vector<Shape>& inputs) {
  if (arity() > 0 && static_cast<int>(inputs.size()) != arity())
    fail_layer("takes ", arity(), " input(s), got ", inputs.size());
  if (arity() == 0 && inputs.size() < 2) fail_layer("takes two or more inputs, got ", inputs.size());
  // Shapes are ints and layers index frames with them: a value of more than 2^31 floats (8 GB
  // a frame) is refused here, before a size wraps round (a 100000 x 100000 image's Flatten).
  constexpr std::size_t kMostValues = std::numeric_limits<int>::max();
  for (const Shape& in : inputs)
    if (in.size() > kMostValues)
      fail_layer("input ", in.str(), " holds ", in.size(), " values a frame; Chorus holds up to ", kMostValues);
  for (const Shape& in : inputs)
    if (in.is_clip() && !takes_clips())
      fail_layer("takes images, sequences or vectors; its input ", in.str(),
                 " is a clip (3-D, for Conv3D and the like): Chorus runs this layer on images only");
  Shape out = infer_shape(inputs);
  if (out.h <= 0 || out.w <= 0 || out.c <= 0 || out.d <= 0)
    fail_layer("output shape ", out.str(), " is empty for input ", inputs.empty() ? "?" : inputs[0].str());
  if (out.size() > kMostValues)
    fail_layer("output ", out.str(), " holds ", out.size(), " values a frame; Chorus holds up to ", kMostValues);
  inputs_ = inputs;
  output_ = out;
  return out;
}

void Layer::forward_in_parts(const std::vector<const Tensor*>& in, Tensor& out, const std::vector<std::int64_t>& parts,
                             FunctionRef<void(int, double)> part_done) const {
  forward(in, out);
  for (std::size_t j = 0; j + 1 < parts.size(); ++j) part_done(static_cast<int>(j), 1.0);
}

void Layer::forward_channels_in_parts(const std::vector<const Tensor*>& in, Tensor& out,
                                      const std::vector<std::int64_t>& parts,
                                      FunctionRef<void(int, double)> part_done) const {
  forward(in, out);
  for (std::size_t j = 0; j + 1 < parts.size(); ++j) part_done(static_cast<int>(j), 1.0);
}

void Layer::forward_positions(const std::vector<const Tensor*>& in, Tensor& out, std::int64_t p0,
                              std::int64_t p1) const {
  (void)in, (void)out, (void)p0, (void)p1;
  fail_layer("cannot compute a run of positions (it is not position-wise)");
}

void Layer::consume_positions(const std::vector<const Tensor*>& in, std::int64_t p0, std::int64_t p1) const {
  (void)in, (void)p0, (void)p1;
  fail_layer("cannot take its input part by part");
}

void Layer::forward_consumed_in_parts(const std::vector<const Tensor*>& in, Tensor& out,
                                      const std::vector<std::int64_t>& parts,
                                      FunctionRef<void(int, double)> part_done) const {
  (void)in, (void)out, (void)parts, (void)part_done;
  fail_layer("cannot take its input part by part");
}

std::size_t Layer::weight_bytes() const {
  std::size_t total = 0;
  for (const auto& spec : weight_specs()) total += spec.count() * sizeof(float);
  return total;
}

std::vector<float> Layer::take_weight(WeightMap& weights, const WeightSpec& spec) const {
  auto it = weights.find(spec.name);
  if (it == weights.end()) fail_layer("weight '", spec.name, "' is missing");
  if (it->second.size() != spec.count())
    fail_layer("weight '", spec.name, "' has ", it->second.size(), " values, expected ", spec.shape_str(), " = ",
               spec.count());
  return std::move(it->second);
}

}  // namespace chorus::layers
