#include "io/onnx/onnx_model.h"

#include <algorithm>

#include "core/error.h"
#include "io/onnx/onnx_graph.h"
#include "io/onnx/onnx_operators.h"
#include "io/onnx/onnx_proto.h"
#include "model/optimize.h"

namespace chorus::io {

namespace {

constexpr int kMinOpset = 7, kMaxOpset = 18;

// The input's dims: float, fixed sizes (a symbolic batch counts as 1), rank 4 or 2.
std::vector<std::int64_t> input_dims(const onnx::ValueInfoProto& input, const std::string& path) {
  const std::string where = cat(path, ": input '", input.name(), "'");
  if (!input.type().has_tensor_type()) fail(where, " is not a tensor");
  const auto& t = input.type().tensor_type();
  if (t.elem_type() != onnx::TensorProto::FLOAT)
    fail(where, " is of type ", onnx_type_name(t.elem_type()), ", expected FLOAT");
  if (!t.has_shape()) fail(where, " has no shape; Chorus needs its sizes");
  std::vector<std::int64_t> dims;
  for (int i = 0; i < t.shape().dim_size(); ++i) {
    const auto& d = t.shape().dim(i);
    if (d.has_dim_value() && d.dim_value() > 0 && d.dim_value() <= (1 << 24)) {
      dims.push_back(d.dim_value());
    } else if (i == 0) {
      dims.push_back(1);  // a symbolic or unset batch size: Chorus runs any number of frames
    } else {
      fail(where, " has dimension ", i, d.has_dim_param() ? cat(" '", d.dim_param(), "' (symbolic)") : " unset",
           "; Chorus needs fixed sizes besides the batch axis");
    }
  }
  if (dims.size() < 2 || dims.size() > 5)
    fail(where, " is ", dims_str(dims), ", of rank ", dims.size(),
         "; Chorus reads 5-D (N, C, D, H, W) clips, 4-D (N, C, H, W) images, 3-D (N, L, D) sequences or 2-D (N, D) "
         "vectors");
  return dims;
}

}  // namespace

OnnxModelStructure load_onnx_structure(const std::string& path, bool optimize) {
  const OnnxFile file = read_onnx_file(path);  // without the weights: see onnx_model.h
  const onnx::GraphProto& g = file.model->graph();
  const int opset = onnx_opset(*file.model, path);
  if (opset < kMinOpset || opset > kMaxOpset)
    fail(path, ": opset ", opset, " is outside the opsets Chorus reads (", kMinOpset, " to ", kMaxOpset, ")");
  OnnxConstants constants(file);
  OnnxGraph graph(g, path, opset, constants);
  model::Model& m = graph.model();

  bool channels_first = false;
  for (const auto& in : g.input()) {
    if (constants.has(in.name())) continue;  // older exporters list initializers as inputs too
    const auto dims = input_dims(in, path);
    const int value = m.add_input(in.name(), frame_of(dims));
    channels_first = channels_first || dims.size() >= 4;
    graph.set_value(in.name(), OnnxValue{value, dims});
  }
  if (m.inputs().empty()) fail(path, ": the graph has no input besides its initializers");
  m.set_channels_first(channels_first);

  for (int i = 0; i < g.node_size(); ++i) {
    if (graph.absorbed(i)) continue;  // computed by a layer made for its group (onnx_fusions.cpp)
    const onnx::NodeProto& p = g.node(i);
    OnnxNode node(graph, p, graph.layer_name(p, i));
    if (!p.domain().empty() && p.domain() != "ai.onnx")
      fail(path, ": node '", node.name(), "' uses operator '", p.domain(), ".", p.op_type(),
           "', which Chorus does not support");
    // Shape arithmetic on constants, and Shape of computed values whose dims are known here,
    // makes constants (Reshape targets, pads); such nodes take no layer.
    graph.fold(i);
    if (node.defines_constant()) continue;
    if (fuse_onnx_nodes(node, i)) continue;
    convert_onnx_node(node);
  }

  if (g.output_size() == 0) fail(path, ": the graph has no output");
  std::vector<int> outputs;
  std::vector<std::string> names;
  for (const auto& o : g.output()) {
    const std::string& out = o.name();
    if (!graph.has_value(out))
      fail(path, ": output '", out, "' ", constants.has(out) ? "is a constant" : "is computed by no node");
    const int node = graph.value(out).node;
    if (model::is_model_input(node)) fail(path, ": output '", out, "' is a model input");
    if (std::find(outputs.begin(), outputs.end(), node) != outputs.end())
      fail(path, ": output '", out, "' is the same value as an earlier output");
    outputs.push_back(node);
    names.push_back(out);
  }
  m.set_outputs(std::move(outputs), std::move(names));
  try {
    m.build();
  } catch (const Error& e) {
    fail(path, ": ", e.what());
  }
  if (optimize) model::optimize(m);
  return OnnxModelStructure{std::move(m), graph.take_weights()};
}

struct OnnxWeightReader::Impl {
  std::string path;
  std::shared_ptr<const OnnxWeightPlan> weights;
  OnnxFile file;  // the weights stay in the file until read() asks for them
  std::unique_ptr<OnnxConstants> constants;
};

OnnxWeightReader::OnnxWeightReader(const std::string& path, std::shared_ptr<const OnnxWeightPlan> weights)
    : impl_(std::make_unique<Impl>()) {
  impl_->path = path;
  impl_->weights = std::move(weights);
  impl_->file = read_onnx_file(path);
  impl_->constants = std::make_unique<OnnxConstants>(impl_->file);
}

OnnxWeightReader::~OnnxWeightReader() = default;

const std::string& OnnxWeightReader::path() const { return impl_->path; }

std::vector<float> OnnxWeightReader::read(int source, const layers::WeightSpec& wanted, WeightSlice slice) {
  CHORUS_ASSERT(source >= 0 && source < static_cast<int>(impl_->weights->size()), "ONNX layer ", source);
  const OnnxLayerWeights& layer = impl_->weights->at(source);
  auto it = layer.recipes.find(wanted.name);
  if (it == layer.recipes.end()) fail(path(), ": node '", layer.node, "' has no weight '", wanted.name, "'");
  std::vector<float> values = it->second(*impl_->constants, slice);
  const std::size_t whole = wanted.count();
  const std::size_t part = slice.axis < 0 ? whole
                                          : whole / static_cast<std::size_t>(wanted.shape.at(slice.axis)) *
                                                static_cast<std::size_t>(slice.end - slice.begin);
  if (values.size() == part) return values;  // cut while read, or not sliced
  if (values.size() != whole)
    fail(path(), ": node '", layer.node, "' weight '", wanted.name, "' has ", values.size(), " values, expected ",
         wanted.shape_str(), " = ", whole);
  return slice_axis(values, wanted.shape, slice.axis, slice.begin, slice.end);
}

}  // namespace chorus::io
