#pragma once
// The state of one ONNX import, internal to io: which Chorus node holds each ONNX value, the
// graph's constants, and what an operator converter needs to read a node and add layers.
#include <cstdint>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "core/error.h"
#include "io/onnx/onnx_model.h"
#include "io/onnx/onnx_proto.h"

namespace chorus::io {

// A value the model computes: the Chorus node holding it and its ONNX dims, batch first.
// Rank-4 values (N, C, H, W) are Chorus frames (H, W, C); rank-3 values (N, L, D), sequences of
// tokens, are (1, L, D); rank-2 values (N, D) are (1, 1, D).
struct OnnxValue {
  int node = model::kModelInput;
  std::vector<std::int64_t> dims;
  // A rank-3 (N, C, L) value held as the frame (1, L, C): an image's pixels made a sequence
  // before the transpose that makes them tokens (a ViT's patch embedding). Only Transpose
  // reads it.
  bool swapped = false;
  int rank() const { return static_cast<int>(dims.size()); }
};

// The Chorus frame holding a rank-2, rank-3 or rank-4 ONNX value.
Shape frame_of(const std::vector<std::int64_t>& dims);
// ONNX dims of a Chorus frame as a rank-2, rank-3 or rank-4 value with `batch` frames.
std::vector<std::int64_t> dims_of(Shape frame, int rank, std::int64_t batch);
// True when NHWC order equals ONNX's order in memory: rank 2 and 3, or rank 4 with one
// channel or one pixel.
bool same_order(const std::vector<std::int64_t>& dims);
// The axis of an ONNX value that is the Chorus frame's channels: 1 for (N, C, H, W) and
// (N, D), 2 for (N, L, D).
int channel_axis(int rank);
// "(1, 3, 224, 224)".
std::string dims_str(const std::vector<std::int64_t>& dims);

class OnnxGraph {
 public:
  OnnxGraph(const onnx::GraphProto& graph, std::string source, int opset, OnnxConstants& constants);

  const std::string& source() const { return source_; }
  int opset() const { return opset_; }
  const OnnxConstants& constants() const { return constants_; }
  const onnx::GraphProto& proto() const { return graph_; }

  // Nodes (by index) that read value `name`, in graph order.
  const std::vector<int>& consumers(const std::string& name) const;
  // The node that computes value `name`, or -1 (inputs, initializers).
  int producer(const std::string& name) const;
  // Marks a node as computed by a layer made for a group of nodes (an attention block, a layer
  // norm written out in operators): the import loop passes over it.
  void absorb(int node) { absorbed_.insert(node); }
  bool absorbed(int node) const { return absorbed_.count(node) > 0; }
  // Folds node `index` into a constant when its inputs are constants, giving Shape the dims of
  // values inside a group being fused (`dims`) as well as those of computed values.
  bool fold(int index, const std::map<std::string, std::vector<std::int64_t>>& dims = {});
  model::Model& model() { return model_; }
  OnnxWeightPlan& weights() { return *weights_; }
  std::shared_ptr<OnnxWeightPlan> take_weights() { return weights_; }

  bool has_value(const std::string& name) const { return values_.count(name) > 0; }
  const OnnxValue& value(const std::string& name) const { return values_.at(name); }
  void set_value(const std::string& name, OnnxValue v) { values_[name] = std::move(v); }
  // True when some node or the graph output reads value `name`.
  bool is_used(const std::string& name) const { return used_.count(name) > 0; }
  // A layer name for node `index`: its own name if unique, else one made unique.
  std::string layer_name(const onnx::NodeProto& node, int index);
  // `base`, or `base` with a suffix that makes it unique among the names given so far.
  std::string unique_name(const std::string& base);

 private:
  const onnx::GraphProto& graph_;
  std::string source_;
  int opset_;
  OnnxConstants& constants_;
  std::map<std::string, std::vector<int>> consumers_;
  std::map<std::string, int> producers_;
  std::set<int> absorbed_;
  model::Model model_;
  std::shared_ptr<OnnxWeightPlan> weights_ = std::make_shared<OnnxWeightPlan>();
  std::map<std::string, OnnxValue> values_;
  std::set<std::string> used_;
  std::set<std::string> names_;
};

// One node being converted: its attributes and inputs, checked, with messages naming the node.
class OnnxNode {
 public:
  OnnxNode(OnnxGraph& graph, const onnx::NodeProto& proto, std::string name)
      : graph_(graph), proto_(proto), name_(std::move(name)) {}

  const std::string& name() const { return name_; }
  const std::string& op() const { return proto_.op_type(); }
  int opset() const { return graph_.opset(); }
  const std::string& source() const { return graph_.source(); }

  // Throws "<file>: node '<name>' (<op>): <message>".
  template <typename... Args>
  [[noreturn]] void fail(const Args&... args) const {
    chorus::fail(graph_.source(), ": node '", name_, "' (", op(), "): ", args...);
  }

  bool has_attr(const char* name) const { return find_attr(name) != nullptr; }
  std::int64_t attr_int(const char* name, std::int64_t fallback) const;
  float attr_float(const char* name, float fallback) const;
  std::string attr_string(const char* name, const std::string& fallback) const;
  std::vector<std::int64_t> attr_ints(const char* name, std::vector<std::int64_t> fallback) const;

  // Inputs count empty optional ones; has_input is false for those.
  int inputs() const { return proto_.input_size(); }
  bool has_input(int i) const { return i < inputs() && !proto_.input(i).empty(); }
  const std::string& input_name(int i) const { return proto_.input(i); }
  bool is_constant(int i) const { return has_input(i) && graph_.constants().has(input_name(i)); }
  const onnx::NodeProto& proto() const { return proto_; }
  OnnxGraph& graph() { return graph_; }
  // A value the model computes (not a constant); fails when missing or constant, or when it
  // is a swapped (N, C, L) value (see OnnxValue), unless `swapped_ok`.
  const OnnxValue& activation(int i, bool swapped_ok = false) const;
  // A constant input; fails when missing or computed.
  std::vector<std::int64_t> constant_dims(int i) const;
  std::vector<float> constant_floats(int i) const;
  std::vector<std::int64_t> constant_ints(int i) const;

  // True when the node's first output is one of the graph's constants (Constant nodes).
  bool defines_constant() const { return proto_.output_size() > 0 && graph_.constants().has(proto_.output(0)); }
  // Fails when an output besides the first is read (MaxPool indices, Dropout mask...).
  void require_one_output() const;
  // Adds a layer reading `inputs`, builds it, and returns its output as a rank-`rank` value.
  // `recipes` make its weights. Build errors are reported as this node's.
  OnnxValue add_layer(std::unique_ptr<layers::Layer> layer, const std::vector<OnnxValue>& inputs, int rank,
                      std::map<std::string, OnnxWeightRecipe> recipes = {});
  // Makes `v` the node's (first) output.
  void set_output(const OnnxValue& v);

 private:
  const onnx::AttributeProto* find_attr(const char* name) const;
  const onnx::AttributeProto& attr_of_type(const char* name, int type) const;

  OnnxGraph& graph_;
  const onnx::NodeProto& proto_;
  std::string name_;
};

}  // namespace chorus::io
