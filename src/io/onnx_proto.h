#pragma once
// The ONNX protobuf side of the importer, internal to io (only io's .cpp files include it, so
// no other module sees protobuf): reading a whole .onnx file, and the graph's constants
// (initializers, Constant nodes, Identity nodes of constants) as plain numbers.
#include <onnx/onnx_pb.h>

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

namespace chorus::io {

// Parses a whole .onnx file. A protobuf message cannot be read in parts, so this holds every
// initializer in memory. Throws chorus::Error for missing, unreadable, oversized or malformed files.
std::unique_ptr<onnx::ModelProto> read_onnx_file(const std::string& path);

// The ai.onnx opset the model declares; throws when it declares none.
int onnx_opset(const onnx::ModelProto& model, const std::string& source);

// Name of an ONNX tensor data type ("FLOAT", "INT64"...), for messages.
std::string onnx_type_name(int data_type);

// Dims of a value the model computes, or null when unknown (for folding Shape).
using OnnxDimsLookup = std::function<const std::vector<std::int64_t>*(const std::string&)>;

// Constant tensors of a graph by value name, converted on demand: initializers, Constant nodes,
// Identity nodes of constants, and the small computations exporters emit on constants (shape
// arithmetic: Shape, Gather, Unsqueeze, Squeeze, Concat, Reshape, Slice, Transpose, Cast,
// ConstantOfShape, Add/Sub/Mul/Div), folded in node order. `graph` must outlive it.
class OnnxConstants {
 public:
  OnnxConstants(const onnx::GraphProto& graph, std::string source);

  // Folds `node` when its inputs are constants (or, for Shape, values whose dims `computed`
  // knows), making its output a constant; false when it cannot. Throws for malformed nodes.
  bool fold(const onnx::NodeProto& node, const OnnxDimsLookup& computed);

  bool has(const std::string& name) const { return tensors_.count(name) > 0; }
  // Dimensions of constant `name` ([] for a scalar).
  std::vector<std::int64_t> dims(const std::string& name) const;
  // Values of a FLOAT, DOUBLE or integer constant as floats, row-major. `node` names the
  // reader in messages; throws for missing constants, other types, sizes that disagree.
  std::vector<float> floats(const std::string& name, const std::string& node) const;
  // Values of an integer constant (INT64, INT32).
  std::vector<std::int64_t> ints(const std::string& name, const std::string& node) const;

 private:
  const onnx::TensorProto& tensor(const std::string& name, const std::string& node) const;
  void add_constant_node(const onnx::NodeProto& node, int index);
  // Values of any numeric constant as doubles; sets *is_float for FLOAT/DOUBLE.
  std::vector<double> numbers(const std::string& name, const std::string& node, bool* is_float) const;
  void add_folded(const std::string& name, const std::vector<std::int64_t>& dims, bool is_float,
                  const std::vector<double>& values);

  std::string source_;
  std::map<std::string, const onnx::TensorProto*> tensors_;
  std::vector<std::unique_ptr<onnx::TensorProto>> owned_;  // made from value_float(s) / value_int(s)
};

}  // namespace chorus::io
