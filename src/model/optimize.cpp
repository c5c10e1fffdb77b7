#include "model/optimize.h"

#include <algorithm>

#include "core/error.h"
#include "layers/activation_layer.h"
#include "layers/batch_norm.h"
#include "layers/conv2d.h"
#include "layers/dense.h"
#include "layers/depthwise_conv2d.h"
#include "layers/reshape.h"
#include "layers/separable_conv2d.h"

namespace chorus::model {

namespace {

using layers::Layer;

// Replaces every read of `from` by `to` and moves the model outputs along.
void rewire(std::vector<Node>& nodes, std::vector<int>& outputs, int from, int to) {
  for (auto& node : nodes)
    for (int& i : node.inputs)
      if (i == from) i = to;
  for (int& o : outputs)
    if (o == from) o = to;
}

int readers(const std::vector<Node>& nodes, const std::vector<bool>& removed, int node) {
  int count = 0;
  for (std::size_t n = 0; n < nodes.size(); ++n)
    if (!removed[n])
      for (int i : nodes[n].inputs) count += i == node;
  return count;
}

bool can_absorb_batch_norm(const Layer& l) {
  return dynamic_cast<const layers::Conv2D*>(&l) || dynamic_cast<const layers::DepthwiseConv2D*>(&l) ||
         dynamic_cast<const layers::SeparableConv2D*>(&l) || dynamic_cast<const layers::Dense*>(&l);
}

}  // namespace

bool fold_scale_shift(Layer& producer, const Layer& batch_norm, int first_channel, bool shift) {
  const auto& bn = dynamic_cast<const layers::BatchNorm&>(batch_norm);
  const int channels = producer.output_shape().c;
  CHORUS_ASSERT(first_channel + channels <= static_cast<int>(bn.scale().size()), "fold range");
  std::vector<float> s(bn.scale().begin() + first_channel, bn.scale().begin() + first_channel + channels);
  std::vector<float> t(channels, 0.0f);
  if (shift) t.assign(bn.shift().begin() + first_channel, bn.shift().begin() + first_channel + channels);
  if (auto* conv = dynamic_cast<layers::Conv2D*>(&producer)) conv->fold_scale_shift(s, t);
  else if (auto* dw = dynamic_cast<layers::DepthwiseConv2D*>(&producer)) dw->fold_scale_shift(s, t);
  else if (auto* sep = dynamic_cast<layers::SeparableConv2D*>(&producer)) sep->fold_scale_shift(s, t);
  else if (auto* dense = dynamic_cast<layers::Dense*>(&producer)) dense->fold_scale_shift(s, t);
  else return false;
  return true;
}

void apply_folds(Node& node) {
  for (const auto& f : node.folded) CHORUS_ASSERT(fold_scale_shift(*node.layer, *f.layer), "fold into ", node.name());
}

OptimizeStats optimize(Model& model) {
  OptimizeStats stats;
  std::vector<Node>& nodes = model.nodes();
  std::vector<int> outputs = model.outputs();
  const auto is_output = [&](int n) { return std::find(outputs.begin(), outputs.end(), n) != outputs.end(); };
  std::vector<bool> removed(nodes.size(), false);

  for (std::size_t n = 0; n < nodes.size(); ++n) {
    Node& node = nodes[n];
    Layer& layer = *node.layer;
    const int src = node.inputs.empty() ? kModelInput : node.inputs[0];
    // A model output stays a node: it is not a model input, and two outputs are not one node.
    const bool keep_as_output =
        is_output(static_cast<int>(n)) && (is_model_input(src) || is_output(src));

    // Identity layers (Dropout...): readers read the input instead.
    if (dynamic_cast<layers::Identity*>(&layer) && !keep_as_output) {
      if (!is_model_input(src)) nodes[src].merged.push_back(layer.name());
      rewire(nodes, outputs, static_cast<int>(n), src);
      removed[n] = true;
      ++stats.identities_removed;
      continue;
    }
    if (is_model_input(src) || readers(nodes, removed, src) != 1 || is_output(src)) continue;
    Node& producer = nodes[src];
    // A shared layer's other calls need it as it is: nothing folds into it, and it folds nowhere.
    if (producer.layer.use_count() > 1 || node.layer.use_count() > 1) continue;
    layers::Activation* producer_act = producer.layer->fusable_activation();
    // Batch normalisation after a linear convolution or dense layer becomes its kernel and bias.
    if (auto* bn = dynamic_cast<layers::BatchNorm*>(&layer)) {
      if (producer_act && producer_act->is_linear() && can_absorb_batch_norm(*producer.layer)) {
        *producer_act = bn->activation();
        producer.merged.push_back(layer.name());
        producer.folded.push_back(FoldedLayer{std::move(node.layer), node.source});
        for (auto& m : node.merged) producer.merged.push_back(m);
        rewire(nodes, outputs, static_cast<int>(n), src);
        removed[n] = true;
        ++stats.batch_norms_folded;
      }
      continue;
    }
    // A standalone activation runs inside its producer while the data is still in cache.
    if (auto* act = dynamic_cast<layers::ActivationLayer*>(&layer)) {
      if (producer_act && producer_act->is_linear()) {
        *producer_act = act->activation();
        producer.merged.push_back(layer.name());
        for (auto& m : node.merged) producer.merged.push_back(m);
        rewire(nodes, outputs, static_cast<int>(n), src);
        removed[n] = true;
        ++stats.activations_fused;
      }
    }
  }

  // Compact the node list, renumbering inputs.
  std::vector<int> index(nodes.size(), -1);
  std::vector<Node> kept;
  for (std::size_t n = 0; n < nodes.size(); ++n) {
    if (removed[n]) continue;
    index[n] = static_cast<int>(kept.size());
    kept.push_back(std::move(nodes[n]));
  }
  for (auto& node : kept)
    for (int& i : node.inputs)
      if (!is_model_input(i)) {
        CHORUS_ASSERT(index[i] >= 0, "node reads a removed node");
        i = index[i];
      }
  for (int& o : outputs) {
    CHORUS_ASSERT(!is_model_input(o) && index[o] >= 0, "optimiser removed an output");
    o = index[o];
  }
  model.replace_nodes(std::move(kept), std::move(outputs));
  return stats;
}

}  // namespace chorus::model
