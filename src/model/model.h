#pragma once
// A model is a DAG of layers stored in topological order, with one or more inputs and outputs.
// Shape inference is its own step (build); forward runs a batch through it in one process,
// releasing each activation after its last consumer so that peak memory stays near the
// weights plus the largest live activations.
#include <limits>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "layers/layer.h"

namespace chorus::model {

class Executor;

// A value is a node's output (its index) or a model input: input k is -1 - k, so the first
// input is kModelInput. Every list of values (Node::inputs, live values at cuts) uses this.
constexpr int kModelInput = -1;
constexpr int model_input(int k) { return -1 - k; }
// "No value" where a model input would be a valid answer.
constexpr int kNoNode = std::numeric_limits<int>::min();
constexpr bool is_model_input(int value) { return value < 0 && value != kNoNode; }
constexpr int input_index(int value) { return -1 - value; }

// One input of the model, as its file names it, and its frame shape (NHWC).
struct ModelInput {
  std::string name;
  Shape shape;
};

// A batch normalisation the optimiser folded into a node; its weights are loaded with the
// node's and applied to them (model::apply_folds).
struct FoldedLayer {
  std::shared_ptr<layers::Layer> layer;
  int source = -1;
};

struct Node {
  // Shared by the nodes of a layer the model calls at several places (Keras' shared layers):
  // one set of weights serves every call.
  std::shared_ptr<layers::Layer> layer;
  std::vector<int> inputs;          // earlier nodes, or model inputs (model_input(k))
  std::vector<std::string> merged;  // layers folded or fused into this one by the optimiser
  std::vector<FoldedLayer> folded;  // batch norms whose weights fold into this layer's at load
  int source = -1;                  // index of the layer in the imported file (for its weights)
  std::string call_name;            // a shared layer's later call: its own name ("c_call1")
  const std::string& name() const { return call_name.empty() ? layer->name() : call_name; }
  // The layer's weights with those of the batch norms folded into it, as loaded.
  std::size_t weight_bytes() const {
    std::size_t total = layer->weight_bytes();
    for (const auto& f : folded) total += f.layer->weight_bytes();
    return total;
  }
};

// Per-layer figures for `chorus info` and the planner.
struct LayerCost {
  double macs = 0;                 // multiply-adds per frame
  std::size_t weight_bytes = 0;
  std::size_t output_bytes = 0;    // one frame's output activation
};

class Model {
 public:
  // A model of one input: its name in the file, its frame shape (NHWC) and whether the source
  // model is channels_first, i.e. its users feed NCHW data.
  void set_input(std::string name, Shape shape, bool channels_first = false);
  // Appends an input (model_input(0) first); returns its value. For models of several.
  int add_input(std::string name, Shape shape);
  void set_channels_first(bool channels_first) { channels_first_ = channels_first; }
  // Appends a layer; its inputs must already be in the model. Returns its index.
  int add(std::unique_ptr<layers::Layer> layer, std::vector<int> inputs, int source = -1);
  // Appends another call of node `shared`'s layer (the same object, so the same weights) on
  // `inputs`, which must have the shapes of that node's, named `name` in plans and reports.
  // Returns its index.
  int add_call(int shared, std::vector<int> inputs, std::string name);
  // Whether node i's layer serves other nodes too.
  bool is_shared(int node) const { return nodes_.at(node).layer.use_count() > 1; }
  // The model's outputs, in the file's order (by default the last node added), and their names
  // as the file gives them (by default the nodes' names; an ONNX output names a value).
  void set_output(int node) { set_outputs({node}); }
  void set_outputs(std::vector<int> nodes, std::vector<std::string> names = {});

  // Shape inference over all nodes in order; throws chorus::Error naming the failing layer.
  void build();

  // Runs a batch (NHWC frames of input_shape()) through a model of one input and one output
  // and returns the output batch (through an Executor; a stage of a run holds its own).
  Tensor forward(const Tensor& input, std::vector<double>* node_seconds = nullptr) const;
  // Any model: one batch per input (equal frame counts), one batch per output, in order. With
  // node_seconds, adds each node's wall time in seconds to it (sized to nodes()): every node
  // then runs on its own, as device profiles need (a plan may cut between any two), unless
  // `step_first` is given (sized to nodes()). The model then runs as it does untimed, fused
  // steps and all (fused_run), a step's time goes to its first node, and step_first[n] is the
  // first node of the step that ran node n (n itself when it ran alone).
  std::vector<Tensor> forward(const std::vector<const Tensor*>& inputs, std::vector<double>* node_seconds = nullptr,
                              std::vector<int>* step_first = nullptr) const;

  const std::vector<Node>& nodes() const { return nodes_; }
  std::vector<Node>& nodes() { return nodes_; }
  const Node& node(int i) const { return nodes_.at(i); }
  const std::vector<ModelInput>& inputs() const { return inputs_; }
  // Model input values, in order: model_input(0), model_input(1)...
  std::vector<int> input_values() const;
  const std::vector<int>& outputs() const { return outputs_; }
  const std::vector<std::string>& output_names() const { return output_names_; }
  // The one input or output of a model that has one (asserted: code that serves models of
  // several reads inputs() and outputs()).
  int output() const;
  const std::string& input_name() const;
  const Shape& input_shape() const;
  Shape output_shape() const;
  bool channels_first() const { return channels_first_; }
  // Shape of a value: a node's output, or a model input.
  Shape shape_of(int value) const;
  // Name of a value: the node's, or the model input's.
  const std::string& value_name(int value) const;
  // Values are numbered 0 .. value_count() - 1 by value_slot (model inputs first), for tables.
  int value_count() const { return static_cast<int>(inputs_.size() + nodes_.size()); }
  int value_slot(int value) const { return value + static_cast<int>(inputs_.size()); }

  // Index of the node with this name (or that absorbed a layer of this name); -1 if none.
  int find(const std::string& name) const;
  // Nodes that read node i's output.
  std::vector<int> consumers(int node) const;
  // Whether forward() runs this node together with the next one: a 1x1 expansion that only
  // the depthwise layer after it reads (layers/pointwise_depthwise). Per-layer timing does not.
  bool fuses_with_next(int node) const;
  // Whether forward() makes the Add after this node in this node's epilogue: a 1x1 convolution
  // through packed_gemm with no activation, read only by the Add of it and one other value of
  // the same shape (a residual connection). Returns that other input, or kNoNode.
  int adds_into_next(int node) const;
  // Whether forward() runs this depthwise node together with the 1x1 projection after it, the
  // only reader of its output (layers/pointwise_depthwise).
  bool projects_after(int node) const;
  // The nodes that forward() runs as one step from this node on: a 1x1 expansion and the
  // depthwise layer after it (fuses_with_next), the projection after a depthwise layer
  // (projects_after) and the Add after the projection or after any other such 1x1 convolution
  // (adds_into_next).
  struct FusedRun {
    int length = 1;          // nodes [node, node + length); 1: the node alone
    bool expand = false;     // the run starts with a 1x1 expansion of the depthwise layer
    bool depthwise = false;  // the run holds a depthwise layer (at node, or after the expansion)
    bool project = false;    // the depthwise layer's projection follows it
    int residual = kNoNode;  // the Add's other input where the run ends with an Add
  };
  FusedRun fused_run(int node) const;
  LayerCost cost(int node) const;  // a shared layer's weights count in each of its calls
  LayerCost total_cost() const;    // and once here

  // Replaces the node list (used by the optimiser); indices in `nodes` must be consistent.
  void replace_nodes(std::vector<Node> nodes, std::vector<int> outputs);

 private:
  // Whether node + 1 is the only reader of node's output, and node is not a model output.
  bool only_next_reads(int node) const;
  bool is_output(int node) const;

  std::vector<ModelInput> inputs_;
  bool channels_first_ = false;
  std::vector<Node> nodes_;
  std::vector<int> outputs_;
  std::vector<std::string> output_names_;
  bool built_ = false;
  // The executor forward() ran last, kept so that the next call with the same batch size
  // neither allocates nor page-faults. Rebuilt when the graph changes or the model moved (the
  // executor points into it); a concurrent call that finds it busy runs one of its own.
  struct ForwardCache;  // model.cpp
  static std::shared_ptr<ForwardCache> new_forward_cache();
  std::shared_ptr<ForwardCache> cache_ = new_forward_cache();
};

}  // namespace chorus::model
