#include "layers/dense.h"

#include <algorithm>

#include "core/error.h"
#include "core/parallel.h"
#include "layers/gemm.h"

namespace chorus::layers {

namespace {
// Fewer units than this and a vector's product keeps the plain kernel: a panel holds 16.
constexpr int kMinPackedVectorUnits = 16;
}  // namespace

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
  packed_.reset();
  const Shape& in = input_shapes()[0];
  // Packed for packed_gemm over several positions, and for one vector too: its product then
  // reads long contiguous runs of weights, where the plain kernel's columns gave each pass four
  // short ones (AlexNet's `chorus run`: 13.3-16.7 -> 11.7-12.4 ms on one core, 8.3-9.2 -> 6.3-7.4
  // on two; docs/performance.md).
  const bool vector = in.h * in.w == 1;
  if (vector ? settings_.units >= kMinPackedVectorUnits : prefer_packed_gemm(in.c, settings_.units)) {
    packed_ = std::make_unique<PackedWeights>(std::move(kernel_), in.c, settings_.units);  // and frees it
  }
}

void Dense::multiply_vector(const float* x, int c0, int c1, float* out, int u0, int u1, bool accumulate) const {
  const int units = settings_.units;
  if (!packed_) {
    // Column-major (units x in): input channels [c0, c1) are columns c0.. of the kernel.
    gemm(u1 - u0, 1, c1 - c0, kernel_.data() + static_cast<std::size_t>(c0) * units + u0, units, x, c1 - c0, out + u0,
         units, accumulate ? 1.0f : 0.0f);
    return;
  }
  // Each thread a contiguous run of panels, of at least 64 K multiply-adds, in pieces of whole
  // groups of four panels (packed_gemv reads four streams at a time).
  const int first = u0 / 16, panels = (u1 + 15) / 16 - first;
  const std::int64_t grain = std::max(1, 65536 / (16 * std::max(1, c1 - c0)));
  parallel_range(
      panels, grain,
      [&](std::int64_t a, std::int64_t b) {
        packed_gemv(x, *packed_, c0, c1, out, std::max(u0, 16 * (first + static_cast<int>(a))),
                    std::min(u1, 16 * (first + static_cast<int>(b))), accumulate);
      },
      4);
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
  bool ones = true;
  for (float f : scale) ones = ones && f == 1.0f;
  if (!ones && packed_) packed_->scale_filters(scale);
  if (!ones)
    for (std::size_t row = 0; row < kernel_.size(); row += u)
      for (int j = 0; j < u; ++j) kernel_[row + j] *= scale[j];
  if (bias_.empty()) bias_.assign(u, 0.0f);
  for (int i = 0; i < u; ++i) bias_[i] = bias_[i] * scale[i] + shift[i];
  settings_.use_bias = true;
}

void Dense::forward(const std::vector<const Tensor*>& in, Tensor& out) const {
  const Tensor& x = *in[0];
  out.resize(x.frames(), output_shape());
  compute_positions(x, out, 0, static_cast<std::int64_t>(x.frames()) * input_shapes()[0].h * input_shapes()[0].w);
}

void Dense::forward_in_parts(const std::vector<const Tensor*>& in, Tensor& out, const std::vector<std::int64_t>& parts,
                             FunctionRef<void(int, double)> part_done) const {
  const Tensor& x = *in[0];
  out.resize(x.frames(), output_shape());
  const std::int64_t positions = static_cast<std::int64_t>(x.frames()) * input_shapes()[0].h * input_shapes()[0].w;
  CHORUS_ASSERT(parts.size() >= 2 && parts.front() == 0 && parts.back() == positions, "parts of ", name(),
                " do not cover its ", positions, " positions");
  for (std::size_t j = 0; j + 1 < parts.size(); ++j) {
    compute_positions(x, out, parts[j], parts[j + 1]);
    part_done(static_cast<int>(j), double(parts[j + 1]) / positions);
  }
}

void Dense::forward_channels_in_parts(const std::vector<const Tensor*>& in, Tensor& out,
                                      const std::vector<std::int64_t>& parts,
                                      FunctionRef<void(int, double)> part_done) const {
  const Tensor& x = *in[0];
  const int cin = input_shapes()[0].c, units = settings_.units;
  const Activation& act = settings_.activation;
  CHORUS_ASSERT(x.frames() * input_shapes()[0].h * input_shapes()[0].w == 1, "layer ", name(),
                ": parts of channels need a single vector");
  CHORUS_ASSERT(parts.size() >= 2 && parts.front() == 0 && parts.back() == units, "parts of ", name(),
                " do not cover its ", units, " units");
  if (act.kind == ActivationKind::softmax) {  // needs every unit: whole, then the parts at once
    Layer::forward_channels_in_parts(in, out, parts, part_done);
    return;
  }
  out.resize(1, output_shape());
  for (std::size_t j = 0; j + 1 < parts.size(); ++j) {
    const int u0 = static_cast<int>(parts[j]), u1 = static_cast<int>(parts[j + 1]);
    float* o = out.data() + u0;
    multiply_vector(x.data(), 0, cin, out.data(), u0, u1, false);
    if (!bias_.empty())
      for (int u = u0; u < u1; ++u) out.data()[u] += bias_[u];
    act.apply(o, static_cast<std::size_t>(u1 - u0), u1 - u0);
    part_done(static_cast<int>(j), double(u1) / units);
  }
}

void Dense::multiply_input_block(const float* x, int frames, int c0, int c1, float* out, bool accumulate) const {
  const int units = settings_.units;
  CHORUS_ASSERT(c0 >= 0 && c0 <= c1 && c1 <= input_shapes()[0].c, "layer ", name(), ": input block ", c0, "..", c1,
                " of a vector");
  if (c0 == c1) {  // an empty block adds nothing
    if (!accumulate) std::fill(out, out + static_cast<std::size_t>(frames) * units, 0.0f);
    return;
  }
  if (!packed_) {  // all frames in one product
    gemm(units, frames, c1 - c0, kernel_.data() + static_cast<std::size_t>(c0) * units, units, x, c1 - c0, out, units,
         accumulate ? 1.0f : 0.0f);
    return;
  }
  for (int f = 0; f < frames; ++f)
    multiply_vector(x + static_cast<std::size_t>(f) * (c1 - c0), c0, c1, out + static_cast<std::size_t>(f) * units, 0,
                    units, accumulate);
}

void Dense::finish_vectors(float* out, int frames) const {
  const int units = settings_.units;
  if (!bias_.empty())
    for (int f = 0; f < frames; ++f)
      for (int u = 0; u < units; ++u) out[static_cast<std::size_t>(f) * units + u] += bias_[u];
  settings_.activation.apply(out, static_cast<std::size_t>(frames) * units, units);
}

void Dense::forward_positions(const std::vector<const Tensor*>& in, Tensor& out, std::int64_t p0,
                              std::int64_t p1) const {
  compute_positions(*in[0], out, p0, p1);
}

// Output positions [p0, p1) of the batch (its frames' positions back to back).
void Dense::compute_positions(const Tensor& x, Tensor& out, std::int64_t p0, std::int64_t p1) const {
  const int cin = input_shapes()[0].c, units = settings_.units;
  const int positions = static_cast<int>(p1 - p0);
  const float* xs = x.data() + p0 * cin;
  float* os = out.data() + p0 * units;
  if (packed_ && positions == 1) {  // one vector: the panels streamed, split among the threads
    multiply_vector(xs, 0, cin, os, 0, units, false);
    finish_vectors(os, 1);
    return;
  }
  if (packed_) {
    const float* bias = bias_.empty() ? nullptr : bias_.data();
    const Activation& act = settings_.activation;
    float lo, hi;
    const int threads = parallel_threads();
    if (threads > 1 && packed_->panels() >= 2 * threads && act.as_clamp(lo, hi) && units > positions) {
      // More weights than tokens: threads share the weights' panels, reading the tokens.
      const int tile = packed_gemm_tile_panels();
      parallel_range(
          packed_->panels(), tile,
          [&](std::int64_t first, std::int64_t last) {
            packed_gemm(xs, cin, positions, *packed_, bias, act, os, static_cast<int>(first), static_cast<int>(last));
          },
          tile);
    } else {
      // Threads take tokens; a non-clamping activation (GELU) runs on each block in cache.
      parallel_range(positions, 12, [&](std::int64_t q0, std::int64_t q1) {
        packed_gemm(xs + q0 * cin, cin, static_cast<int>(q1 - q0), *packed_, bias, act, os + q0 * units);
      });
    }
    return;
  }
  gemm(units, positions, cin, kernel_.data(), units, xs, cin, os, units);
  finish_vectors(os, positions);
}

}  // namespace chorus::layers
