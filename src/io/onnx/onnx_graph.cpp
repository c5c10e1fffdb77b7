#include "io/onnx/onnx_graph.h"

namespace chorus::io {

Shape frame_of(const std::vector<std::int64_t>& dims) {
  auto d = [&](int i) { return static_cast<int>(dims[i]); };
  if (dims.size() == 5) return {d(3), d(4), d(1), d(2)};  // (N, C, D, H, W): a clip
  if (dims.size() == 4) return {d(2), d(3), d(1)};
  if (dims.size() == 3) return {1, d(1), d(2)};
  CHORUS_ASSERT(dims.size() == 2, "frame of a rank-", dims.size(), " value");
  return {1, 1, d(1)};
}

std::vector<std::int64_t> dims_of(Shape frame, int rank, std::int64_t batch) {
  if (rank == 5) return {batch, frame.c, frame.d, frame.h, frame.w};
  if (rank == 4) return {batch, frame.c, frame.h, frame.w};
  if (rank == 3) {
    CHORUS_ASSERT(frame.h == 1, "rank 3 value of frame ", frame.str());
    return {batch, frame.w, frame.c};
  }
  CHORUS_ASSERT(rank == 2 && frame.h == 1 && frame.w == 1, "rank ", rank, " value of frame ", frame.str());
  return {batch, frame.c};
}

bool same_order(const std::vector<std::int64_t>& dims) {
  return dims.size() == 2 || dims.size() == 3 || (dims.size() == 4 && (dims[1] == 1 || dims[2] * dims[3] == 1)) ||
         (dims.size() == 5 && (dims[1] == 1 || dims[2] * dims[3] * dims[4] == 1));
}

int channel_axis(int rank) { return rank == 3 ? 2 : 1; }

std::string dims_str(const std::vector<std::int64_t>& dims) {
  std::string s = "(";
  for (std::size_t i = 0; i < dims.size(); ++i) s += (i ? ", " : "") + std::to_string(dims[i]);
  return s + ")";
}

OnnxGraph::OnnxGraph(const onnx::GraphProto& graph, std::string source, int opset, OnnxConstants& constants)
    : graph_(graph), source_(std::move(source)), opset_(opset), constants_(constants) {
  for (int i = 0; i < graph.node_size(); ++i) {
    for (const auto& in : graph.node(i).input()) {
      used_.insert(in);
      auto& readers = consumers_[in];
      if (readers.empty() || readers.back() != i) readers.push_back(i);
    }
    for (const auto& out : graph.node(i).output()) producers_[out] = i;
  }
  for (const auto& out : graph.output()) used_.insert(out.name());
}

const std::vector<int>& OnnxGraph::consumers(const std::string& name) const {
  static const std::vector<int> none;
  auto it = consumers_.find(name);
  return it == consumers_.end() ? none : it->second;
}

int OnnxGraph::producer(const std::string& name) const {
  auto it = producers_.find(name);
  return it == producers_.end() ? -1 : it->second;
}

bool OnnxGraph::fold(int index, const std::map<std::string, std::vector<std::int64_t>>& dims) {
  return constants_.fold(graph_.node(index), [&](const std::string& name) -> const std::vector<std::int64_t>* {
    if (auto it = dims.find(name); it != dims.end()) return &it->second;
    return has_value(name) ? &value(name).dims : nullptr;
  });
}

std::string OnnxGraph::layer_name(const onnx::NodeProto& node, int index) {
  return unique_name(node.name().empty() ? cat(node.op_type(), "_", index) : node.name());
}

std::string OnnxGraph::unique_name(const std::string& base) {
  std::string name = base;
  for (int k = 1; names_.count(name); ++k) name = cat(base, "_", k);
  names_.insert(name);
  return name;
}

const onnx::AttributeProto* OnnxNode::find_attr(const char* name) const {
  for (const auto& a : proto_.attribute())
    if (a.name() == name) return &a;
  return nullptr;
}

const onnx::AttributeProto& OnnxNode::attr_of_type(const char* name, int type) const {
  const onnx::AttributeProto* a = find_attr(name);
  CHORUS_ASSERT(a, "attribute ", name);
  if (a->type() != type) {
    auto type_name = [](int t) {
      return onnx::AttributeProto_AttributeType_IsValid(t)
                 ? onnx::AttributeProto_AttributeType_Name(static_cast<onnx::AttributeProto_AttributeType>(t))
                 : cat("type ", t);
    };
    fail("attribute '", name, "' is ", type_name(a->type()), ", expected ", type_name(type));
  }
  return *a;
}

std::int64_t OnnxNode::attr_int(const char* name, std::int64_t fallback) const {
  return has_attr(name) ? attr_of_type(name, onnx::AttributeProto::INT).i() : fallback;
}

float OnnxNode::attr_float(const char* name, float fallback) const {
  return has_attr(name) ? attr_of_type(name, onnx::AttributeProto::FLOAT).f() : fallback;
}

std::string OnnxNode::attr_string(const char* name, const std::string& fallback) const {
  return has_attr(name) ? attr_of_type(name, onnx::AttributeProto::STRING).s() : fallback;
}

std::vector<std::int64_t> OnnxNode::attr_ints(const char* name, std::vector<std::int64_t> fallback) const {
  if (!has_attr(name)) return fallback;
  const auto& a = attr_of_type(name, onnx::AttributeProto::INTS);
  return {a.ints().begin(), a.ints().end()};
}

const OnnxValue& OnnxNode::activation(int i, bool swapped_ok) const {
  if (!has_input(i)) fail("input ", i, " is missing");
  if (graph_.constants().has(input_name(i)))
    fail("input ", i, " ('", input_name(i), "') is a constant; Chorus expects a computed value there");
  if (!graph_.has_value(input_name(i)))
    fail("reads '", input_name(i),
         "', which no earlier node computes (the graph is not in topological order, "
         "or the value is missing)");
  const OnnxValue& v = graph_.value(input_name(i));
  if (v.swapped && !swapped_ok)
    fail("reads '", input_name(i), "' ", dims_str(v.dims),
         ", pixels made a sequence in (N, C, L) order; Chorus supports it only as the input of a Transpose "
         "to (N, L, C)");
  return v;
}

std::vector<std::int64_t> OnnxNode::constant_dims(int i) const {
  if (!is_constant(i))
    fail("input ", i, has_input(i) ? cat(" ('", input_name(i), "')") : std::string(),
         " must be a constant (an initializer or Constant node)");
  auto dims = graph_.constants().dims(input_name(i));
  for (auto d : dims)
    if (d < 0 || d > (1 << 30)) fail("constant '", input_name(i), "' ", dims_str(dims), " has dimension ", d);
  return dims;
}

std::vector<float> OnnxNode::constant_floats(int i) const {
  constant_dims(i);
  return graph_.constants().floats(input_name(i), name_);
}

std::vector<std::int64_t> OnnxNode::constant_ints(int i) const {
  constant_dims(i);
  return graph_.constants().ints(input_name(i), name_);
}

void OnnxNode::require_one_output() const {
  for (int i = 1; i < proto_.output_size(); ++i)
    if (!proto_.output(i).empty() && graph_.is_used(proto_.output(i)))
      fail("output ", i, " ('", proto_.output(i), "') is used; Chorus computes only the first output");
}

OnnxValue OnnxNode::add_layer(std::unique_ptr<layers::Layer> layer, const std::vector<OnnxValue>& inputs, int rank,
                              std::map<std::string, OnnxWeightRecipe> recipes) {
  model::Model& m = graph_.model();
  std::vector<Shape> shapes;
  std::vector<int> nodes;
  for (const auto& in : inputs) {
    shapes.push_back(m.shape_of(in.node));
    nodes.push_back(in.node);
  }
  Shape out;
  try {
    out = layer->build(shapes);
  } catch (const Error& e) {
    fail(e.what());
  }
  const int source = static_cast<int>(graph_.weights().size());
  graph_.weights().push_back(OnnxLayerWeights{name_, std::move(recipes)});
  const int node = m.add(std::move(layer), nodes, source);
  if (rank == 2 && (out.h != 1 || out.w != 1)) fail("a 2-D result has frame ", out.str());
  return OnnxValue{node, dims_of(out, rank, inputs.at(0).dims.at(0))};
}

void OnnxNode::set_output(const OnnxValue& v) {
  if (proto_.output_size() < 1 || proto_.output(0).empty()) fail("has no output");
  graph_.set_value(proto_.output(0), v);
}

}  // namespace chorus::io
