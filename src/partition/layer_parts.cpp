#include "partition/layer_parts.h"

#include <algorithm>

#include "core/error.h"
#include "layers/attention.h"
#include "layers/batch_norm.h"
#include "layers/conv2d.h"
#include "layers/dense.h"
#include "layers/depthwise_conv2d.h"
#include "layers/layers3d.h"
#include "layers/pooling.h"
#include "model/optimize.h"
#include "plan/validate.h"

namespace chorus::partition {

using namespace chorus::layers;

namespace {

// Loads the node's folded batch norms (small, whole) so their channels can be folded into a part.
void load_folded(const model::Node& node, io::WeightReader& reader) {
  for (const auto& f : node.folded)
    f.layer->set_weights(reader.read_all(f.source, f.layer->weight_specs()));
}

WeightSpec spec_named(const Layer& layer, const std::string& name) {
  for (const auto& s : layer.weight_specs())
    if (s.name == name) return s;
  CHORUS_ASSERT(false, "no weight ", name, " in ", layer.name());
}

bool has_weight(const Layer& layer, const std::string& name) {
  for (const auto& s : layer.weight_specs())
    if (s.name == name) return true;
  return false;
}

}  // namespace

void slice_channels(const Tensor& in, int begin, int end, Tensor& out) {
  const Shape s = in.shape();
  const int width = end - begin;
  out.resize(in.frames(), {s.h, s.w, width, s.d});
  const std::size_t pixels = in.size() / s.c;
  for (std::size_t p = 0; p < pixels; ++p)
    std::copy(in.data() + p * s.c + begin, in.data() + p * s.c + end, out.data() + p * width);
}

LayerPart make_output_part(const model::Node& node, int begin, int end, io::WeightReader& reader) {
  const Layer& full = *node.layer;
  const Shape in = full.input_shapes()[0];
  LayerPart part;
  WeightMap w;
  int first_channel = begin;
  if (auto* conv = dynamic_cast<const Conv2D*>(&full)) {
    Conv2DSettings s = conv->settings();
    s.filters = end - begin;
    part.layer = std::make_unique<Conv2D>(full.name(), s);
    part.layer->build({in});
    w["kernel"] = reader.read(node.source, spec_named(full, "kernel"), {3, begin, end});
  } else if (auto* conv3d = dynamic_cast<const Conv3D*>(&full)) {
    Conv3DSettings s = conv3d->settings();
    s.filters = end - begin;
    part.layer = std::make_unique<Conv3D>(full.name(), s);
    part.layer->build({in});
    w["kernel"] = reader.read(node.source, spec_named(full, "kernel"), {4, begin, end});
  } else if (auto* dense = dynamic_cast<const Dense*>(&full)) {
    DenseSettings s = dense->settings();
    s.units = end - begin;
    part.layer = std::make_unique<Dense>(full.name(), s);
    part.layer->build({in});
    w["kernel"] = reader.read(node.source, spec_named(full, "kernel"), {1, begin, end});
  } else if (auto* dw = dynamic_cast<const DepthwiseConv2D*>(&full)) {
    // Depthwise: output channels [begin*m, end*m) come from input channels [begin, end) alone.
    const int m = dw->settings().depth_multiplier;
    part.layer = std::make_unique<DepthwiseConv2D>(full.name(), dw->settings());
    part.layer->build({{in.h, in.w, end - begin}});
    part.input_begin = begin;
    part.input_end = end;
    part.reads_all_inputs = false;
    w["depthwise_kernel"] = reader.read(node.source, spec_named(full, "depthwise_kernel"), {2, begin, end});
    begin *= m;
    end *= m;
    first_channel = begin;
  } else if (dynamic_cast<const Pool2D*>(&full) || dynamic_cast<const Pool3D*>(&full) ||
             dynamic_cast<const GlobalPool2D*>(&full)) {
    // A pooling of the slice a convolution kept (plan::split_roles): channels [begin, end) of
    // the input make those of the output.
    if (auto* pool = dynamic_cast<const Pool2D*>(&full))
      part.layer = std::make_unique<Pool2D>(full.name(), pool->settings());
    else if (auto* pool3d = dynamic_cast<const Pool3D*>(&full))
      part.layer = std::make_unique<Pool3D>(full.name(), pool3d->kind(), pool3d->window());
    else {
      const auto& global = dynamic_cast<const GlobalPool2D&>(full);
      part.layer = std::make_unique<GlobalPool2D>(full.name(), global.kind(), global.dims());
    }
    Shape slice = in;
    slice.c = end - begin;
    part.layer->build({slice});
    part.input_begin = begin;
    part.input_end = end;
    part.reads_all_inputs = false;
  } else {
    fail("layer '", full.name(), "' (", full.type(), ") cannot be split by output channels");
  }
  if (has_weight(full, "bias")) w["bias"] = reader.read(node.source, spec_named(full, "bias"), {0, begin, end});
  // Softmax mixes all channels: the part leaves it out and it runs on the gathered output.
  if (Activation* act = part.layer->fusable_activation(); act && act->kind == ActivationKind::softmax) {
    part.activation = *act;
    *act = Activation{};
  }
  part.layer->set_weights(std::move(w));
  load_folded(node, reader);
  for (const auto& f : node.folded) model::fold_scale_shift(*part.layer, *f.layer, first_channel);
  part.begin = begin;
  part.end = end;
  return part;
}

LayerPart make_parity_part(const model::Node& node, const std::vector<int>& bounds, io::WeightReader& reader) {
  const Layer& full = *node.layer;
  CHORUS_ASSERT(node.folded.empty(), "parity of '", full.name(), "' with a folded batch norm");
  const Shape in = full.input_shapes()[0];
  const int width = plan::widest_part(bounds);
  LayerPart part;
  int axis = 0;
  if (auto* conv = dynamic_cast<const Conv2D*>(&full)) {
    Conv2DSettings s = conv->settings();
    s.filters = width;
    part.layer = std::make_unique<Conv2D>(full.name(), s);
    axis = 3;
  } else if (auto* dense = dynamic_cast<const Dense*>(&full)) {
    DenseSettings s = dense->settings();
    s.units = width;
    part.layer = std::make_unique<Dense>(full.name(), s);
    axis = 1;
  } else {
    fail("layer '", full.name(), "' (", full.type(), ") cannot carry a parity slice: only Dense and Conv2D can");
  }
  part.layer->build({in});
  // The sliced axis is the last of the kernel (and the only one of the bias): each slice is
  // rows of its width, added into rows of `width`.
  const auto add_slices = [&](const WeightSpec& spec, int slice_axis) {
    std::vector<float> sum;
    for (std::size_t r = 0; r + 1 < bounds.size(); ++r) {
      const int w = bounds[r + 1] - bounds[r];
      const std::vector<float> slice = reader.read(node.source, spec, {slice_axis, bounds[r], bounds[r + 1]});
      const std::size_t rows = slice.size() / w;
      if (sum.empty()) sum.assign(rows * width, 0.0f);
      for (std::size_t i = 0; i < rows; ++i)
        for (int j = 0; j < w; ++j) sum[i * width + j] += slice[i * w + j];
    }
    return sum;
  };
  WeightMap w;
  w["kernel"] = add_slices(spec_named(full, "kernel"), axis);
  if (has_weight(full, "bias")) w["bias"] = add_slices(spec_named(full, "bias"), 0);
  part.layer->set_weights(std::move(w));
  strip_activation(part);
  part.begin = 0;
  part.end = width;
  return part;
}

layers::Activation layer_activation(const model::Node& node) {
  // fusable_activation() is the layer's own setting; it is only read here.
  const Activation* act = const_cast<Layer&>(*node.layer).fusable_activation();
  return act ? *act : Activation{};
}

void strip_activation(LayerPart& part) {
  if (Activation* act = part.layer->fusable_activation()) *act = Activation{};
  part.activation = Activation{};
}

LayerPart make_input_part(const model::Node& node, int begin, int end, io::WeightReader& reader) {
  const Layer& full = *node.layer;
  const Shape in = full.input_shapes()[0];
  const Shape band{in.h, in.w, end - begin, in.d};
  LayerPart part;
  WeightMap w;
  Activation activation;
  if (auto* conv = dynamic_cast<const Conv2D*>(&full)) {
    Conv2DSettings s = conv->settings();
    activation = s.activation;
    s.use_bias = false;
    s.activation = Activation{};
    part.layer = std::make_unique<Conv2D>(full.name(), s);
    part.layer->build({band});
    w["kernel"] = reader.read(node.source, spec_named(full, "kernel"), {2, begin, end});
  } else if (auto* conv3d = dynamic_cast<const Conv3D*>(&full)) {
    Conv3DSettings s = conv3d->settings();
    activation = s.activation;
    s.use_bias = false;
    s.activation = Activation{};
    part.layer = std::make_unique<Conv3D>(full.name(), s);
    part.layer->build({band});
    w["kernel"] = reader.read(node.source, spec_named(full, "kernel"), {3, begin, end});
  } else if (auto* dense = dynamic_cast<const Dense*>(&full)) {
    DenseSettings s = dense->settings();
    activation = s.activation;
    s.use_bias = false;
    s.activation = Activation{};
    part.layer = std::make_unique<Dense>(full.name(), s);
    part.layer->build({band});
    w["kernel"] = reader.read(node.source, spec_named(full, "kernel"), {0, begin, end});
  } else {
    fail("layer '", full.name(), "' (", full.type(), ") cannot be split by input channels");
  }
  part.layer->set_weights(std::move(w));
  const int outputs = full.output_shape().c;
  part.bias.assign(outputs, 0.0f);
  if (has_weight(full, "bias")) part.bias = reader.read(node.source, spec_named(full, "bias"));
  load_folded(node, reader);
  for (const auto& f : node.folded) {
    // Scale every partial sum; the shift joins the bias, added once after the sum.
    model::fold_scale_shift(*part.layer, *f.layer, 0, /*shift=*/false);
    const auto& bn = dynamic_cast<const BatchNorm&>(*f.layer);
    for (int c = 0; c < outputs; ++c) part.bias[c] = part.bias[c] * bn.scale()[c] + bn.shift()[c];
  }
  part.activation = activation;
  part.begin = begin;
  part.end = end;
  part.input_begin = begin;
  part.input_end = end;
  part.reads_all_inputs = false;
  return part;
}

LayerPart make_blocked_output_part(const model::Node& node, int begin, int end, const std::vector<int>& input_bounds,
                                   io::WeightReader& reader) {
  const auto* conv = dynamic_cast<const Conv2D*>(node.layer.get());
  CHORUS_ASSERT(conv && conv->settings().groups == 1, "layer ", node.layer->name(), " taken by input blocks");
  const Shape in = conv->input_shapes()[0];
  const int width = end - begin;
  LayerPart part;
  Conv2DSettings s = conv->settings();
  s.filters = width;
  part.layer = std::make_unique<Conv2D>(conv->name(), s);  // its shapes; the blocks hold the weights
  part.layer->build({in});
  if (s.activation.kind == ActivationKind::softmax)
    part.activation = s.activation;  // mixes channels: after the slices are gathered
  else
    part.block_activation = s.activation;
  s.use_bias = false;
  s.activation = Activation{};
  load_folded(node, reader);
  // This member's filters, read once (kh, kw, channels, width), then cut into the blocks.
  const std::vector<float> slice = reader.read(node.source, spec_named(*conv, "kernel"), {3, begin, end});
  const std::vector<int> dims{s.kernel_h, s.kernel_w, in.c, width};
  for (std::size_t k = 0; k + 1 < input_bounds.size(); ++k) {
    const int c0 = input_bounds[k], c1 = input_bounds[k + 1];
    auto block = std::make_unique<Conv2D>(conv->name(), s);
    block->build({{in.h, in.w, c1 - c0, in.d}});
    WeightMap w;
    w["kernel"] = io::slice_axis(slice, dims, 2, c0, c1);
    block->set_weights(std::move(w));
    // Each block is scaled; the shift joins the bias, added once to the blocks' sum.
    for (const auto& f : node.folded) model::fold_scale_shift(*block, *f.layer, begin, /*shift=*/false);
    part.input_blocks.push_back(std::move(block));
  }
  part.block_bias.assign(width, 0.0f);
  if (has_weight(*conv, "bias")) part.block_bias = reader.read(node.source, spec_named(*conv, "bias"), {0, begin, end});
  for (const auto& f : node.folded) {
    const auto& bn = dynamic_cast<const BatchNorm&>(*f.layer);
    for (int c = 0; c < width; ++c)
      part.block_bias[c] = part.block_bias[c] * bn.scale()[begin + c] + bn.shift()[begin + c];
  }
  part.begin = begin;
  part.end = end;
  return part;
}

LayerPart make_head_part(const model::Node& node, int begin, int end, io::WeightReader& reader) {
  const auto* full = dynamic_cast<const MultiHeadAttention*>(node.layer.get());
  if (!full) fail("layer '", node.layer->name(), "' (", node.layer->type(), ") cannot be split by heads");
  AttentionSettings s = full->settings();
  s.head_begin = begin;
  s.head_end = end;
  s.output_bias = false;  // added once, after the partial sums
  LayerPart part;
  part.layer = std::make_unique<MultiHeadAttention>(full->name(), s);
  part.layer->build(full->input_shapes());
  WeightMap w;
  for (const auto& spec : part.layer->weight_specs()) {
    // Heads are axis 1 of the (D, heads, dim) kernels, axis 0 of the biases and of the output
    // kernel (heads, dim, D).
    const int axis = spec.name.find("/kernel") != std::string::npos && spec.name != "attention_output/kernel" ? 1 : 0;
    w[spec.name] = reader.read(node.source, spec_named(*full, spec.name), {axis, begin, end});
  }
  part.layer->set_weights(std::move(w));
  part.bias.assign(s.output_dim, 0.0f);
  if (has_weight(*full, "attention_output/bias"))
    part.bias = reader.read(node.source, spec_named(*full, "attention_output/bias"));
  part.begin = begin;
  part.end = end;
  return part;
}

}  // namespace chorus::partition
