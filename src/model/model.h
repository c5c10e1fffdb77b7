#pragma once
// A model is a DAG of layers stored in topological order, with one input and one output.
// Shape inference is its own step (build); forward runs a batch through it in one process,
// releasing each activation after its last consumer so that peak memory stays near the
// weights plus the largest live activations.
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "layers/layer.h"

namespace chorus::model {

class Executor;

// Stands for the model's input in Node::inputs.
constexpr int kModelInput = -1;
// "No node" where kModelInput would be a valid answer.
constexpr int kNoNode = -2;

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
  std::vector<int> inputs;          // indices of earlier nodes, or kModelInput
  std::vector<std::string> merged;  // layers folded or fused into this one by the optimiser
  std::vector<FoldedLayer> folded;  // batch norms whose weights fold into this layer's at load
  int source = -1;                  // index of the layer in the imported file (for its weights)
  std::string call_name;            // a shared layer's later call: its own name ("c_call1")
  const std::string& name() const { return call_name.empty() ? layer->name() : call_name; }
};

// Per-layer figures for `chorus info` and the planner.
struct LayerCost {
  double macs = 0;                 // multiply-adds per frame
  std::size_t weight_bytes = 0;
  std::size_t output_bytes = 0;    // one frame's output activation
};

class Model {
 public:
  // The input as Keras names it, its frame shape (NHWC) and whether the source model is
  // channels_first, i.e. its users feed NCHW data.
  void set_input(std::string name, Shape shape, bool channels_first = false);
  // Appends a layer; its inputs must already be in the model. Returns its index.
  int add(std::unique_ptr<layers::Layer> layer, std::vector<int> inputs, int source = -1);
  // Appends another call of node `shared`'s layer (the same object, so the same weights) on
  // `inputs`, which must have the shapes of that node's, named `name` in plans and reports.
  // Returns its index.
  int add_call(int shared, std::vector<int> inputs, std::string name);
  // Whether node i's layer serves other nodes too.
  bool is_shared(int node) const { return nodes_.at(node).layer.use_count() > 1; }
  void set_output(int node) { output_ = node; }

  // Shape inference over all nodes in order; throws chorus::Error naming the failing layer.
  void build();

  // Runs a batch (NHWC frames of input_shape()) and returns the output batch (through an
  // Executor; a stage of a run holds its own).
  Tensor forward(const Tensor& input) const;
  // Same, adding each node's wall time in seconds to node_seconds (sized to nodes()).
  Tensor forward(const Tensor& input, std::vector<double>* node_seconds) const;

  const std::vector<Node>& nodes() const { return nodes_; }
  std::vector<Node>& nodes() { return nodes_; }
  const Node& node(int i) const { return nodes_.at(i); }
  int output() const { return output_; }
  const std::string& input_name() const { return input_name_; }
  const Shape& input_shape() const { return input_shape_; }
  Shape output_shape() const;
  bool channels_first() const { return channels_first_; }
  // Shape of a node's output, or of the model input for kModelInput.
  Shape shape_of(int node) const;

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
  void replace_nodes(std::vector<Node> nodes, int output);

 private:
  // Whether node + 1 is the only reader of node's output, and node is not the model's output.
  bool only_next_reads(int node) const;

  std::string input_name_ = "input";
  Shape input_shape_;
  bool channels_first_ = false;
  std::vector<Node> nodes_;
  int output_ = -1;
  bool built_ = false;
  // The executor forward() ran last, kept so that the next call with the same batch size
  // neither allocates nor page-faults. Rebuilt when the graph changes or the model moved (the
  // executor points into it); a concurrent call that finds it busy runs one of its own.
  struct ForwardCache;  // model.cpp
  static std::shared_ptr<ForwardCache> new_forward_cache();
  std::shared_ptr<ForwardCache> cache_ = new_forward_cache();
};

}  // namespace chorus::model
