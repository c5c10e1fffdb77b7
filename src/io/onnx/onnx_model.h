#pragma once
// Loads an ONNX model (.onnx, opsets 7 to 18; tested at 11, 13 and 17) into Chorus layers.
// ONNX values are NCHW; Chorus keeps NHWC frames, so the model is marked channels_first (users
// feed NCHW data, converted at the edge) and each node maps onto the NHWC layer that computes
// the same thing, its weights converted to the Keras layouts the layers expect (conv kernels
// OIHW -> HWIO, Gemm/MatMul matrices to (in, out), alpha and beta folded in). Flatten and
// Reshape before a Gemm permute to ONNX's (c, h, w) order. Unsupported operators and settings
// fail with the file, the node's name and what was found.
//
// The file is parsed without the raw_data of its large initializers (the weights), which stay
// in the file (io/onnx/onnx_wire.h): the structure is built without reading them, and each rank's
// OnnxWeightReader reads from the file only the weights of its own layers. A slice of a Dense
// matrix or of a convolution kernel is laid out as it is read, so a split member holds only its
// part (and reads only its rows of the file where they are contiguous); other weights, which are
// small, are read whole and cut after (Keras HDF5 files are read by hyperslabs).
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "io/weight_reader.h"
#include "model/model.h"

namespace chorus::io {

class OnnxConstants;  // io/onnx/onnx_proto.h

// Makes one weight of an imported layer, in Keras shape and order, from the file's constants:
// the part the slice asks for where the recipe can cut it while reading (matrix(), conv_kernel()),
// or else the whole weight, which the reader then cuts.
using OnnxWeightRecipe = std::function<std::vector<float>(const OnnxConstants&, const WeightSlice&)>;

// The weights of one imported layer (one entry per layer, indexed by Node::source).
struct OnnxLayerWeights {
  std::string node;                                 // the ONNX node, for messages
  std::map<std::string, OnnxWeightRecipe> recipes;  // by Keras weight name
};
using OnnxWeightPlan = std::vector<OnnxLayerWeights>;

struct OnnxModelStructure {
  model::Model model;
  std::shared_ptr<const OnnxWeightPlan> weights;
};

// Builds the graph (shapes only, no weights), optimised if asked. Throws chorus::Error naming
// the file and node for malformed files, unsupported operators and unsupported settings.
OnnxModelStructure load_onnx_structure(const std::string& path, bool optimize);

// Reads the weights of a model loaded by load_onnx_structure (see the note at the top).
class OnnxWeightReader : public WeightReader {
 public:
  OnnxWeightReader(const std::string& path, std::shared_ptr<const OnnxWeightPlan> weights);
  ~OnnxWeightReader() override;
  std::vector<float> read(int source, const layers::WeightSpec& wanted, WeightSlice slice = {}) override;
  const std::string& path() const override;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace chorus::io
