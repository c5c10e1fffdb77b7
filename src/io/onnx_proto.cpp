#include "io/onnx_proto.h"

#include <cerrno>
#include <climits>
#include <cstring>
#include <fstream>

#include "core/error.h"

namespace chorus::io {

namespace {

std::string dims_text(const std::vector<std::int64_t>& dims) {
  std::string s = "(";
  for (std::size_t i = 0; i < dims.size(); ++i) s += (i ? ", " : "") + std::to_string(dims[i]);
  return s + (dims.size() == 1 ? ",)" : ")");
}

// Copies `count` little-endian values of type T out of raw_data, or fails naming the tensor.
template <typename T>
std::vector<T> from_raw(const onnx::TensorProto& t, std::size_t count, const std::string& where) {
  const std::string& raw = t.raw_data();
  if (raw.size() != count * sizeof(T))
    fail(where, " holds ", raw.size(), " bytes of data, expected ", count, " x ", sizeof(T), " = ", count * sizeof(T));
  std::vector<T> out(count);
  if (count) std::memcpy(out.data(), raw.data(), raw.size());
  return out;
}

template <typename T, typename Repeated>
std::vector<T> from_field(const Repeated& field, std::size_t count, const std::string& where) {
  if (static_cast<std::size_t>(field.size()) != count)
    fail(where, " holds ", field.size(), " values, expected ", count);
  return std::vector<T>(field.begin(), field.end());
}

// Elements of a tensor, refusing negative dimensions and counts past what a file can hold.
std::size_t element_count(const onnx::TensorProto& t, const std::string& where) {
  std::size_t count = 1;
  for (auto d : t.dims()) {
    if (d < 0 || d > INT_MAX) fail(where, " has dimension ", d);
    count *= static_cast<std::size_t>(d);
    if (count > static_cast<std::size_t>(INT_MAX)) fail(where, " has more than 2^31 elements");
  }
  return count;
}

}  // namespace

std::unique_ptr<onnx::ModelProto> read_onnx_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary | std::ios::ate);
  if (!in) fail(path, ": cannot open (", std::strerror(errno), ")");
  const std::streamoff size = in.tellg();
  if (size < 0) fail(path, ": cannot read its size");
  if (size > INT_MAX)
    fail(path, ": ", size,
         " bytes; a protobuf message is limited to 2 GiB (models this large keep their weights "
         "in external data files, which Chorus does not read)");
  in.seekg(0);
  // Parsed from the stream, so the file's bytes are not held twice (weights are most of them).
  auto model = std::make_unique<onnx::ModelProto>();
  if (!model->ParseFromIstream(&in))
    fail(path, ": not a valid ONNX model (the protobuf does not parse: truncated or not ONNX)");
  if (!model->has_graph() || model->graph().node_size() == 0)
    fail(path, ": not an ONNX model, or an empty one (no graph nodes)");
  return model;
}

int onnx_opset(const onnx::ModelProto& model, const std::string& source) {
  for (const auto& o : model.opset_import())
    if (o.domain().empty() || o.domain() == "ai.onnx") return static_cast<int>(o.version());
  fail(source, ": the model declares no ai.onnx opset (opset_import)");
}

std::string onnx_type_name(int data_type) {
  if (onnx::TensorProto_DataType_IsValid(data_type))
    return onnx::TensorProto_DataType_Name(static_cast<onnx::TensorProto_DataType>(data_type));
  return cat("type ", data_type);
}

OnnxConstants::OnnxConstants(const onnx::GraphProto& graph, std::string source) : source_(std::move(source)) {
  for (const auto& t : graph.initializer()) tensors_[t.name()] = &t;
  for (int i = 0; i < graph.node_size(); ++i) {
    const auto& node = graph.node(i);
    const bool standard = node.domain().empty() || node.domain() == "ai.onnx";
    if (!standard || node.output_size() < 1) continue;
    if (node.op_type() == "Constant") add_constant_node(node, i);
    // Exporters share weights through Identity nodes: the output is the same constant.
    if (node.op_type() == "Identity" && node.input_size() == 1 && has(node.input(0)))
      tensors_[node.output(0)] = tensors_.at(node.input(0));
    try {
      fold(node, [](const std::string&) { return nullptr; });
    } catch (const Error&) {
      // Malformed: the converter, which folds again with the values' dims, reports it.
    }
  }
}

void OnnxConstants::add_constant_node(const onnx::NodeProto& node, int index) {
  for (const auto& a : node.attribute()) {
    auto owned = std::make_unique<onnx::TensorProto>();
    if (a.name() == "value" && a.has_t()) {
      tensors_[node.output(0)] = &a.t();
      return;
    } else if (a.name() == "value_float") {
      owned->set_data_type(onnx::TensorProto::FLOAT);
      owned->add_float_data(a.f());
    } else if (a.name() == "value_floats") {
      owned->set_data_type(onnx::TensorProto::FLOAT);
      owned->add_dims(a.floats_size());
      for (float f : a.floats()) owned->add_float_data(f);
    } else if (a.name() == "value_int") {
      owned->set_data_type(onnx::TensorProto::INT64);
      owned->add_int64_data(a.i());
    } else if (a.name() == "value_ints") {
      owned->set_data_type(onnx::TensorProto::INT64);
      owned->add_dims(a.ints_size());
      for (auto v : a.ints()) owned->add_int64_data(v);
    } else {
      continue;  // sparse or string values: the Constant converter reports them
    }
    tensors_[node.output(0)] = owned.get();
    owned_.push_back(std::move(owned));
    return;
  }
}

const onnx::TensorProto& OnnxConstants::tensor(const std::string& name, const std::string& node) const {
  auto it = tensors_.find(name);
  if (it == tensors_.end()) fail(source_, ": node '", node, "' reads constant '", name, "', which the file lacks");
  const onnx::TensorProto& t = *it->second;
  if (t.data_location() == onnx::TensorProto::EXTERNAL)
    fail(source_, ": node '", node, "' reads tensor '", name,
         "' stored in an external data file, which Chorus does not read (save the model with its weights inside)");
  return t;
}

std::vector<std::int64_t> OnnxConstants::dims(const std::string& name) const {
  auto it = tensors_.find(name);
  CHORUS_ASSERT(it != tensors_.end(), "no constant ", name);
  return {it->second->dims().begin(), it->second->dims().end()};
}

std::vector<float> OnnxConstants::floats(const std::string& name, const std::string& node) const {
  const onnx::TensorProto& t = tensor(name, node);
  const std::string where = cat(source_, ": node '", node, "': tensor '", name, "' ", dims_text(dims(name)));
  const std::size_t count = element_count(t, where);
  const bool raw = !t.raw_data().empty();
  switch (t.data_type()) {
    case onnx::TensorProto::FLOAT:
      return raw ? from_raw<float>(t, count, where) : from_field<float>(t.float_data(), count, where);
    case onnx::TensorProto::DOUBLE: {
      auto d = raw ? from_raw<double>(t, count, where) : from_field<double>(t.double_data(), count, where);
      return std::vector<float>(d.begin(), d.end());
    }
    case onnx::TensorProto::INT64:
    case onnx::TensorProto::INT32: {
      auto v = ints(name, node);
      return std::vector<float>(v.begin(), v.end());
    }
    default:
      fail(where, " is of type ", onnx_type_name(t.data_type()), ", expected FLOAT (or DOUBLE)");
  }
}

std::vector<std::int64_t> OnnxConstants::ints(const std::string& name, const std::string& node) const {
  const onnx::TensorProto& t = tensor(name, node);
  const std::string where = cat(source_, ": node '", node, "': tensor '", name, "' ", dims_text(dims(name)));
  const std::size_t count = element_count(t, where);
  const bool raw = !t.raw_data().empty();
  switch (t.data_type()) {
    case onnx::TensorProto::INT64:
      return raw ? from_raw<std::int64_t>(t, count, where) : from_field<std::int64_t>(t.int64_data(), count, where);
    case onnx::TensorProto::INT32: {
      auto v = raw ? from_raw<std::int32_t>(t, count, where) : from_field<std::int32_t>(t.int32_data(), count, where);
      return std::vector<std::int64_t>(v.begin(), v.end());
    }
    default:
      fail(where, " is of type ", onnx_type_name(t.data_type()), ", expected INT64");
  }
}

}  // namespace chorus::io
