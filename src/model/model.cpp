#include "model/model.h"

#include <algorithm>
#include <chrono>

#include "core/error.h"
#include "layers/merge.h"
#include "layers/pointwise_depthwise.h"
#include "model/executor.h"

namespace chorus::model {

struct Model::ForwardCache {
  std::mutex mutex;
  std::unique_ptr<Executor> executor;
  const Model* owner = nullptr;
  bool fused = true;
};

std::shared_ptr<Model::ForwardCache> Model::new_forward_cache() { return std::make_shared<ForwardCache>(); }

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
  cache_ = new_forward_cache();
  return index;
}

int Model::add_call(int shared, std::vector<int> inputs, std::string name) {
  CHORUS_ASSERT(shared >= 0 && shared < static_cast<int>(nodes_.size()), "shared node ", shared);
  const int index = static_cast<int>(nodes_.size());
  for (int i : inputs) CHORUS_ASSERT(i == kModelInput || (i >= 0 && i < index), "input ", i, " of node ", index);
  nodes_.push_back(Node{nodes_[shared].layer, std::move(inputs), {}, {}, nodes_[shared].source, std::move(name)});
  output_ = index;
  built_ = false;
  cache_ = new_forward_cache();
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

LayerCost Model::cost(int node) const {
  const auto& layer = *nodes_.at(node).layer;
  return {layer.macs(), layer.weight_bytes(), layer.output_shape().size() * sizeof(float)};
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

void Model::replace_nodes(std::vector<Node> nodes, int output) {
  nodes_ = std::move(nodes);
  output_ = output;
  cache_ = new_forward_cache();
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

namespace {
// Adds each node's time to a per-node table (per-layer timing runs every node alone).
class NodeSeconds : public StepObserver {
 public:
  explicit NodeSeconds(std::vector<double>* seconds) : seconds_(seconds) {}
  void step_done(int first, int, double started) override { (*seconds_)[first] += steady_seconds() - started; }

 private:
  std::vector<double>* seconds_;
};
}  // namespace

Tensor Model::forward(const Tensor& input, std::vector<double>* node_seconds) const {
  CHORUS_ASSERT(built_, "forward() before build()");
  if (input.shape() != input_shape_)
    fail("model input is ", input_shape_.str(), " per frame, got ", input.shape().str());
  const bool fused = node_seconds == nullptr;  // per-layer timing runs every layer on its own
  std::unique_lock<std::mutex> lock(cache_->mutex, std::try_to_lock);
  std::unique_ptr<Executor> own;
  Executor* executor = nullptr;
  if (lock.owns_lock() && cache_->executor && cache_->owner == this && cache_->fused == fused &&
      cache_->executor->frames() == input.frames()) {
    executor = cache_->executor.get();
  } else {
    own = std::make_unique<Executor>(*this, 0, static_cast<int>(nodes_.size()) - 1, std::vector<int>{kModelInput},
                                     std::vector<int>{output_}, input.frames(), Executor::Options{fused, nullptr});
    executor = own.get();
  }
  executor->input(0) = input;
  NodeSeconds timer(node_seconds);
  executor->run(node_seconds ? &timer : nullptr);
  Tensor out = executor->output(0);
  if (own && lock.owns_lock()) {
    cache_->executor = std::move(own);
    cache_->owner = this;
    cache_->fused = fused;
  }
  return out;
}

}  // namespace chorus::model
