#pragma once
// The table from ONNX operator types to Chorus layers, internal to io. Each converter reads one
// node (attributes, constant inputs), adds the layers computing it with recipes for their
// weights, and sets its output value; unsupported settings fail naming the node.
#include <string>
#include <vector>

#include "io/onnx/onnx_graph.h"

namespace chorus::io {

// Converts one node of the ai.onnx domain; throws chorus::Error naming the file, node and
// operator when Chorus does not support it.
void convert_onnx_node(OnnxNode& node);

// Makes one layer of the group of nodes that `node` (at `index`) begins when it is one that
// Chorus recognises (attention, layer norm or GELU written out in operators) and absorbs the
// group's other nodes; false when it begins none (onnx_fusions.cpp).
bool fuse_onnx_nodes(OnnxNode& node, int index);

// A weight that is a constant's values as they are.
OnnxWeightRecipe copied_constant(std::string tensor, std::string node);

// Operator types convert_onnx_node accepts.
std::vector<std::string> supported_onnx_operators();

// Converters for the operators that change only shapes and layout (onnx_shape_operators.cpp).
void convert_flatten(OnnxNode& node);
void convert_reshape(OnnxNode& node);
void convert_transpose(OnnxNode& node);
void convert_concat(OnnxNode& node);
void convert_pad(OnnxNode& node);
void convert_passthrough(OnnxNode& node);  // Identity, Dropout
void convert_constant(OnnxNode& node);

}  // namespace chorus::io
