#pragma once
// The ONNX protobuf side of the importer, internal to io (only io's .cpp files include it, so
// no other module sees protobuf): reading an .onnx file without its large weights, and the
// graph's constants (initializers, Constant nodes, Identity nodes of constants) as plain numbers,
// the large weights read from the file when asked for.
#include <onnx/onnx_pb.h>

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "io/onnx/onnx_wire.h"

namespace chorus::io {

// A parsed .onnx file whose large initializers (raw_data over 64 KiB: the weights) were left in
// the file, so that it takes little memory whatever the model's size.
struct OnnxFile {
  std::string path;
  std::unique_ptr<onnx::ModelProto> model;
  std::map<int, OnnxRawSpan> deferred;  // by index in model->graph().initializer()
};

// Parses an .onnx file but for its large initializers' raw_data (see onnx_wire.h), which
// OnnxConstants reads when asked. Throws chorus::Error for missing, unreadable, oversized or
// malformed files.
OnnxFile read_onnx_file(const std::string& path);

// The ai.onnx opset the model declares; throws when it declares none.
int onnx_opset(const onnx::ModelProto& model, const std::string& source);

// Name of an ONNX tensor data type ("FLOAT", "INT64"...), for messages.
std::string onnx_type_name(int data_type);

// Dims of a value the model computes, or null when unknown (for folding Shape).
using OnnxDimsLookup = std::function<const std::vector<std::int64_t>*(const std::string&)>;

// Receives values [first, first + n) of a constant, row-major.
using OnnxFloatSink = std::function<void(std::size_t first, const float* values, std::size_t n)>;

// Constant tensors of a graph by value name, converted on demand: initializers, Constant nodes,
// Identity nodes of constants, and the small computations exporters emit on constants (shape
// arithmetic: Shape, Gather, Unsqueeze, Squeeze, Concat, Reshape, Slice, Transpose, Cast,
// ConstantOfShape, Add/Sub/Mul/Div), folded in node order. `file` must outlive it; a deferred
// initializer is read from file.path each time it is asked for, and not kept.
class OnnxConstants {
 public:
  explicit OnnxConstants(const OnnxFile& file);

  // Folds `node` when its inputs are constants (or, for Shape, values whose dims `computed`
  // knows), making its output a constant; false when it cannot. Throws for malformed nodes.
  bool fold(const onnx::NodeProto& node, const OnnxDimsLookup& computed);

  bool has(const std::string& name) const { return tensors_.count(name) > 0; }
  // Dimensions of constant `name` ([] for a scalar).
  std::vector<std::int64_t> dims(const std::string& name) const;
  // Values of a FLOAT, DOUBLE or integer constant as floats, row-major. `node` names the
  // reader in messages; throws for missing constants, other types, sizes that disagree, and
  // deferred data the file no longer holds.
  std::vector<float> floats(const std::string& name, const std::string& node) const;
  // The values of floats(name, node) in order, in pieces: sink(first, values, n) gets values
  // [first, first + n). A FLOAT initializer left in the file is read 4 MiB at a time, so that a
  // recipe can lay out a large weight without holding it twice. `begin` and `count` (-1: to the
  // end) ask for values [begin, begin + count) only. Throws as floats() does.
  void stream_floats(const std::string& name, const std::string& node, const OnnxFloatSink& sink, std::size_t begin = 0,
                     std::size_t count = static_cast<std::size_t>(-1)) const;
  // Values of an integer constant (INT64, INT32).
  std::vector<std::int64_t> ints(const std::string& name, const std::string& node) const;

 private:
  const onnx::TensorProto& tensor(const std::string& name, const std::string& node) const;
  // Where the raw_data of `t` lies in the file, or null when it is in the proto.
  const OnnxRawSpan* deferred(const onnx::TensorProto& t) const;
  void add_constant_node(const onnx::NodeProto& node, int index);
  // Values of any numeric constant as doubles; sets *is_float for FLOAT/DOUBLE.
  std::vector<double> numbers(const std::string& name, const std::string& node, bool* is_float) const;
  void add_folded(const std::string& name, const std::vector<std::int64_t>& dims, bool is_float,
                  const std::vector<double>& values);

  std::string source_;  // the file's path
  std::map<std::string, const onnx::TensorProto*> tensors_;
  std::map<const onnx::TensorProto*, OnnxRawSpan> deferred_;
  std::vector<std::unique_ptr<onnx::TensorProto>> owned_;  // made from value_float(s) / value_int(s)
};

}  // namespace chorus::io
