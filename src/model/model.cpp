#include "model/model.h"

#include <algorithm>
#include <chrono>

#include "core/error.h"
#include "layers/merge.h"
#include "layers/pointwise_depthwise.h"

namespace chorus::model {

void Model::set_input(std::string name, Shape shape, bool channels_first) {
  input_name_ = std::move(name);
  input_shape_ = shape;
  channels_first_ = channels_first;
}

int Model::add(std::unique_ptr<layers::Layer> layer, std::vector<int> inputs, int source) {
  const int index = static_cast<int>(nodes_.size());
  for (int i : inputs) CHORUS_ASSERT(i == kModelInput || (i >= 0 && i < index), "input ", i, " of node ", index);
  nodes_.push_back(Node{std::move(layer), std::move(inputs), {}, {}, source});
  output_ = index;
  built_ = false;
  return index;
}

Shape Model::shape_of(int node) const {
  return node == kModelInput ? input_shape_ : nodes_.at(node).layer->output_shape();
}

Shape Model::output_shape() const { return shape_of(output_); }

void Model::build() {
  if (nodes_.empty()) fail("model has no layers");
  for (auto& node : nodes_) {
    std::vector<Shape> shapes;
    for (int i : node.inputs) shapes.push_back(shape_of(i));
    node.layer->build(shapes);
  }
  built_ = true;
}

int Model::find(const std::string& name) const {
  for (std::size_t i = 0; i < nodes_.size(); ++i) {
    if (nodes_[i].name() == name) return static_cast<int>(i);
    for (const auto& m : nodes_[i].merged)
      if (m == name) return static_cast<int>(i);
  }
  return -1;
}

std::vector<int> Model::consumers(int node) const {
  std::vector<int> out;
  for (std::size_t i = 0; i < nodes_.size(); ++i)
    if (std::find(nodes_[i].inputs.begin(), nodes_[i].inputs.end(), node) != nodes_[i].inputs.end())
      out.push_back(static_cast<int>(i));
  return out;
}

LayerCost Model::cost(int node) const {
  const auto& layer = *nodes_.at(node).layer;
  return {layer.macs(), layer.weight_bytes(), layer.output_shape().size() * sizeof(float)};
}

LayerCost Model::total_cost() const {
  LayerCost total;
  for (std::size_t i = 0; i < nodes_.size(); ++i) {
    auto c = cost(static_cast<int>(i));
    total.macs += c.macs;
    total.weight_bytes += c.weight_bytes;
    total.output_bytes = std::max(total.output_bytes, c.output_bytes);
  }
  return total;
}

void Model::replace_nodes(std::vector<Node> nodes, int output) {
  nodes_ = std::move(nodes);
  output_ = output;
}

bool Model::only_next_reads(int node) const {
  if (node < 0 || node + 1 >= static_cast<int>(nodes_.size()) || node == output_) return false;
  for (std::size_t n = 0; n < nodes_.size(); ++n)
    if (static_cast<int>(n) != node + 1 && std::count(nodes_[n].inputs.begin(), nodes_[n].inputs.end(), node) > 0)
      return false;
  return true;
}

bool Model::fuses_with_next(int node) const {
  if (!only_next_reads(node)) return false;
  const Node& next = nodes_[node + 1];
  return nodes_[node].inputs.size() == 1 && next.inputs == std::vector<int>{node} &&
         layers::can_fuse_pointwise_depthwise(*nodes_[node].layer, *next.layer);
}

int Model::adds_into_next(int node) const {
  if (!only_next_reads(node)) return kNoNode;
  const Node& next = nodes_[node + 1];
  const auto* conv = dynamic_cast<const layers::Conv2D*>(nodes_[node].layer.get());
  const auto* add = dynamic_cast<const layers::Elementwise*>(next.layer.get());
  if (!conv || !add || add->type() != "Add" || next.inputs.size() != 2 || !conv->adds_residual_by_pixels())
    return kNoNode;
  const int other = next.inputs[0] == node ? next.inputs[1] : next.inputs[1] == node ? next.inputs[0] : node;
  if (other == node || shape_of(other) != conv->output_shape()) return kNoNode;
  return other;
}

bool Model::projects_after(int node) const {
  if (!only_next_reads(node)) return false;
  const Node& next = nodes_[node + 1];
  return next.inputs == std::vector<int>{node} &&
         layers::can_fuse_depthwise_pointwise(*nodes_[node].layer, *next.layer);
}

Model::FusedRun Model::fused_run(int node) const {
  FusedRun run;
  int dw = node;
  if (fuses_with_next(node)) {
    run.expand = true;
    dw = node + 1;
  } else if (!dynamic_cast<const layers::DepthwiseConv2D*>(nodes_[node].layer.get())) {
    run.residual = adds_into_next(node);
    if (run.residual != kNoNode) run.length = 2;
    return run;
  }
  run.depthwise = true;
  int last = dw;
  if (projects_after(dw)) {
    run.project = true;
    last = dw + 1;
    run.residual = adds_into_next(last);
    if (run.residual != kNoNode) ++last;
  }
  run.length = last - node + 1;
  return run;
}

Tensor Model::forward(const Tensor& input) const { return forward(input, nullptr); }

Tensor Model::forward(const Tensor& input, std::vector<double>* node_seconds) const {
  CHORUS_ASSERT(built_, "forward() before build()");
  if (input.shape() != input_shape_)
    fail("model input is ", input_shape_.str(), " per frame, got ", input.shape().str());
  const int count = static_cast<int>(nodes_.size());
  // How many reads of each node's output are still to come; the output node is never released.
  std::vector<int> pending(count, 0);
  for (const auto& node : nodes_)
    for (int i : node.inputs)
      if (i != kModelInput) ++pending[i];
  pending[output_] += 1;

  std::vector<Tensor> values(count);
  std::vector<Tensor> spare;  // released buffers, reused so that steady state allocates nothing
  {
    std::lock_guard<std::mutex> lock(spare_->mutex);
    spare.swap(spare_->tensors);  // a concurrent call finds none and allocates its own
  }
  for (int n = 0; n < count; ++n) {
    const Node& node = nodes_[n];
    Tensor out;
    const int first = node.inputs[0];
    const bool sole_reader = first != kModelInput && pending[first] == 1 &&
                             std::count(node.inputs.begin(), node.inputs.end(), first) == 1;
    const bool reuse = node.layer->in_place() && sole_reader;
    // Per-layer timing runs every layer on its own, to time each.
    const FusedRun run = node_seconds || reuse ? FusedRun{} : fused_run(n);
    const int last = n + run.length - 1;  // the node whose output this step makes
    const layers::Layer& produced = *nodes_[last].layer;
    if (reuse) {
      out = std::move(values[first]);
    } else if (!spare.empty()) {
      // Best fit: the smallest spare buffer that holds the output, else the largest.
      const std::size_t need = static_cast<std::size_t>(input.frames()) * produced.output_shape().size();
      auto best = spare.end();
      for (auto it = spare.begin(); it != spare.end(); ++it) {
        bool fits = it->capacity() >= need;
        if (best == spare.end()) { best = it; continue; }
        bool best_fits = best->capacity() >= need;
        if ((fits && (!best_fits || it->capacity() < best->capacity())) ||
            (!fits && !best_fits && it->capacity() > best->capacity()))
          best = it;
      }
      out = std::move(*best);
      spare.erase(best);
    }
    std::vector<const Tensor*> in;
    for (std::size_t k = 0; k < node.inputs.size(); ++k) {
      int i = node.inputs[k];
      in.push_back(k == 0 && reuse ? &out : i == kModelInput ? &input : &values[i]);
    }
    // One read of node i done: its buffer goes back to the spares after the last.
    const auto read = [&](int i) {
      if (i != kModelInput && --pending[i] == 0 && values[i].capacity() > 0) spare.push_back(std::move(values[i]));
    };
    auto start = std::chrono::steady_clock::now();
    if (run.length > 1) {
      const Tensor* residual = run.residual == kNoNode       ? nullptr
                               : run.residual == kModelInput ? &input
                                                             : &values[run.residual];
      const layers::Activation add_activation =
          residual ? dynamic_cast<const layers::Elementwise&>(produced).activation() : layers::Activation{};
      if (run.depthwise) {
        layers::DepthwiseChain chain;
        const int dw = run.expand ? n + 1 : n;
        if (run.expand) chain.expand = &dynamic_cast<const layers::Conv2D&>(*node.layer);
        chain.depthwise = &dynamic_cast<const layers::DepthwiseConv2D&>(*nodes_[dw].layer);
        if (run.project) chain.project = &dynamic_cast<const layers::Conv2D&>(*nodes_[dw + 1].layer);
        chain.residual = residual;
        chain.add_activation = add_activation;
        layers::forward_depthwise_chain(chain, *in[0], out);
      } else {
        dynamic_cast<const layers::Conv2D&>(*node.layer).forward_adding(*in[0], *residual, add_activation, out);
      }
      // Only the last node's output was made: the run's reads of values made before it are done.
      for (int m = n; m < last; ++m) pending[m] = 0;
      for (int m = n; m <= last; ++m)
        for (int i : nodes_[m].inputs)
          if (i < n) read(i);
      n = last;
      values[n] = std::move(out);
      continue;
    }
    node.layer->forward(in, out);
    if (node_seconds)
      (*node_seconds)[n] += std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    values[n] = std::move(out);
    for (int i : node.inputs) read(i);
  }
  std::lock_guard<std::mutex> lock(spare_->mutex);
  for (auto& t : spare) spare_->tensors.push_back(std::move(t));
  return std::move(values[output_]);
}

}  // namespace chorus::model
