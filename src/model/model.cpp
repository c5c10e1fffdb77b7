#include "model/model.h"

#include <algorithm>
#include <chrono>

#include "core/error.h"
#include "layers/merge.h"
#include "layers/pointwise_depthwise.h"
#include "model/executor.h"

namespace chorus::model {

namespace {
bool valid_input(int value, int before) { return value != kNoNode && value < before; }
}  // namespace

struct Model::ForwardCache {
  std::mutex mutex;
  std::unique_ptr<Executor> executor;
  const Model* owner = nullptr;
  bool fused = true;
};

std::shared_ptr<Model::ForwardCache> Model::new_forward_cache() { return std::make_shared<ForwardCache>(); }

void Model::set_input(std::string name, Shape shape, bool channels_first) {
  inputs_ = {ModelInput{std::move(name), shape}};
  channels_first_ = channels_first;
}

int Model::add_input(std::string name, Shape shape) {
  CHORUS_ASSERT(nodes_.empty(), "inputs are added before layers");
  inputs_.push_back(ModelInput{std::move(name), shape});
  return model_input(static_cast<int>(inputs_.size()) - 1);
}

void Model::set_outputs(std::vector<int> nodes, std::vector<std::string> names) {
  CHORUS_ASSERT(!nodes.empty(), "a model needs an output");
  CHORUS_ASSERT(names.empty() || names.size() == nodes.size(), "names for ", nodes.size(), " outputs: ", names.size());
  for (int n : nodes) CHORUS_ASSERT(n >= 0 && n < static_cast<int>(nodes_.size()), "output ", n);
  if (names.empty())
    for (int n : nodes) names.push_back(nodes_[n].name());
  outputs_ = std::move(nodes);
  output_names_ = std::move(names);
  cache_ = new_forward_cache();
}

std::vector<int> Model::input_values() const {
  std::vector<int> values;
  for (std::size_t k = 0; k < inputs_.size(); ++k) values.push_back(model_input(static_cast<int>(k)));
  return values;
}

int Model::output() const {
  CHORUS_ASSERT(outputs_.size() == 1, "the model has ", outputs_.size(), " outputs where one was expected");
  return outputs_[0];
}

const std::string& Model::input_name() const {
  CHORUS_ASSERT(inputs_.size() == 1, "the model has ", inputs_.size(), " inputs where one was expected");
  return inputs_[0].name;
}

const Shape& Model::input_shape() const {
  CHORUS_ASSERT(inputs_.size() == 1, "the model has ", inputs_.size(), " inputs where one was expected");
  return inputs_[0].shape;
}

bool Model::is_output(int node) const { return std::find(outputs_.begin(), outputs_.end(), node) != outputs_.end(); }

int Model::add(std::unique_ptr<layers::Layer> layer, std::vector<int> inputs, int source) {
  const int index = static_cast<int>(nodes_.size());
  for (int i : inputs) CHORUS_ASSERT(valid_input(i, index), "input ", i, " of node ", index);
  nodes_.push_back(Node{std::move(layer), std::move(inputs), {}, {}, source, {}});
  set_output(index);
  built_ = false;
  cache_ = new_forward_cache();
  return index;
}

int Model::add_call(int shared, std::vector<int> inputs, std::string name) {
  CHORUS_ASSERT(shared >= 0 && shared < static_cast<int>(nodes_.size()), "shared node ", shared);
  const int index = static_cast<int>(nodes_.size());
  for (int i : inputs) CHORUS_ASSERT(valid_input(i, index), "input ", i, " of node ", index);
  nodes_.push_back(Node{nodes_[shared].layer, std::move(inputs), {}, {}, nodes_[shared].source, std::move(name)});
  set_output(index);
  built_ = false;
  cache_ = new_forward_cache();
  return index;
}

Shape Model::shape_of(int value) const {
  return is_model_input(value) ? inputs_.at(input_index(value)).shape : nodes_.at(value).layer->output_shape();
}

const std::string& Model::value_name(int value) const {
  return is_model_input(value) ? inputs_.at(input_index(value)).name : nodes_.at(value).name();
}

Shape Model::output_shape() const { return shape_of(output()); }

void Model::build() {
  if (nodes_.empty()) fail("model has no layers");
  for (auto& node : nodes_) {
    std::vector<Shape> shapes;
    for (int i : node.inputs) shapes.push_back(shape_of(i));
    // A shared layer is built by its first call; later calls must fit that build.
    const Node* first = nullptr;
    for (const auto& other : nodes_) {
      if (&other == &node) break;
      if (other.layer == node.layer) {
        first = &other;
        break;
      }
    }
    if (first) {
      if (shapes != node.layer->input_shapes()) {
        std::string got, want;
        for (const auto& sh : shapes) got += (got.empty() ? "" : ", ") + sh.str();
        for (const auto& sh : node.layer->input_shapes()) want += (want.empty() ? "" : ", ") + sh.str();
        fail("layer '", node.name(), "' is shared, and called on ", got, " where its first call took ", want,
             " (a shared layer's calls must take the same shapes)");
      }
      continue;
    }
    node.layer->build(shapes);
  }
  built_ = true;
  cache_ = new_forward_cache();
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

namespace {

// A batch norm folded into a layer without a bias gives it one when the weights load (see
// apply_folds): counted from the start, so that a model's figures do not depend on whether its
// weights were read (`chorus info` against `chorus bench`).
std::size_t bias_from_folds(const Node& n) {
  if (n.folded.empty()) return 0;
  for (const auto& spec : n.layer->weight_specs())
    if (spec.name == "bias") return 0;
  return static_cast<std::size_t>(n.layer->output_shape().c) * sizeof(float);
}

}  // namespace

LayerCost Model::cost(int node) const {
  const Node& n = nodes_.at(node);
  const auto& layer = *n.layer;
  return {layer.macs(), layer.weight_bytes() + bias_from_folds(n), layer.output_shape().size() * sizeof(float)};
}

LayerCost Model::total_cost() const {
  LayerCost total;
  for (std::size_t i = 0; i < nodes_.size(); ++i) {
    auto c = cost(static_cast<int>(i));
    total.macs += c.macs;
    // A shared layer's weights count once, with its first call.
    bool first_call = true;
    for (std::size_t k = 0; k < i && first_call; ++k) first_call = nodes_[k].layer != nodes_[i].layer;
    if (first_call) total.weight_bytes += c.weight_bytes;
    total.output_bytes = std::max(total.output_bytes, c.output_bytes);
  }
  return total;
}

void Model::replace_nodes(std::vector<Node> nodes, std::vector<int> outputs) {
  nodes_ = std::move(nodes);
  outputs_ = std::move(outputs);
  cache_ = new_forward_cache();
}

bool Model::only_next_reads(int node) const {
  if (node < 0 || node + 1 >= static_cast<int>(nodes_.size()) || is_output(node)) return false;
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

Tensor Model::forward(const Tensor& input, std::vector<double>* node_seconds) const {
  CHORUS_ASSERT(inputs_.size() == 1 && outputs_.size() == 1, "forward(Tensor) on a model of ", inputs_.size(),
                " inputs and ", outputs_.size(), " outputs");
  return std::move(forward(std::vector<const Tensor*>{&input}, node_seconds)[0]);
}

namespace {
// Adds each step's time to its first node in a per-node table, and notes which step ran each node.
class NodeSeconds : public StepObserver {
 public:
  NodeSeconds(std::vector<double>* seconds, std::vector<int>* step_first)
      : seconds_(seconds), step_first_(step_first) {}
  void step_done(int first, int last, double started) override {
    (*seconds_)[first] += steady_seconds() - started;
    if (step_first_)
      for (int n = first; n <= last; ++n) (*step_first_)[n] = first;
  }

 private:
  std::vector<double>* seconds_;
  std::vector<int>* step_first_;
};
}  // namespace

std::vector<Tensor> Model::forward(const std::vector<const Tensor*>& inputs, std::vector<double>* node_seconds,
                                   std::vector<int>* step_first) const {
  CHORUS_ASSERT(built_, "forward() before build()");
  if (inputs.size() != inputs_.size()) fail("the model takes ", inputs_.size(), " input(s), got ", inputs.size());
  for (std::size_t k = 0; k < inputs.size(); ++k) {
    if (inputs[k]->shape() != inputs_[k].shape)
      fail("model input '", inputs_[k].name, "' is ", inputs_[k].shape.str(), " per frame, got ",
           inputs[k]->shape().str());
    if (inputs[k]->frames() != inputs[0]->frames())
      fail("model input '", inputs_[k].name, "' has ", inputs[k]->frames(), " frames, input '", inputs_[0].name,
           "' ", inputs[0]->frames());
  }
  const int frames = inputs[0]->frames();
  const bool fused = node_seconds == nullptr || step_first != nullptr;
  std::unique_lock<std::mutex> lock(cache_->mutex, std::try_to_lock);
  std::unique_ptr<Executor> own;
  Executor* executor = nullptr;
  if (lock.owns_lock() && cache_->executor && cache_->owner == this && cache_->fused == fused &&
      cache_->executor->frames() == frames) {
    executor = cache_->executor.get();
  } else {
    own = std::make_unique<Executor>(*this, 0, static_cast<int>(nodes_.size()) - 1, input_values(), outputs_, frames,
                                     Executor::Options{fused, nullptr, {}});
    executor = own.get();
  }
  for (std::size_t k = 0; k < inputs.size(); ++k) executor->input(static_cast<int>(k)) = *inputs[k];
  CHORUS_ASSERT(!step_first || (node_seconds && step_first->size() == nodes_.size()), "step_first without times");
  NodeSeconds timer(node_seconds, step_first);
  executor->run(node_seconds ? &timer : nullptr);
  std::vector<Tensor> out;
  for (std::size_t k = 0; k < outputs_.size(); ++k) out.push_back(executor->output(static_cast<int>(k)));
  if (own && lock.owns_lock()) {
    cache_->executor = std::move(own);
    cache_->owner = this;
    cache_->fused = fused;
  }
  return out;
}

}  // namespace chorus::model
