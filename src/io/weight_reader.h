#pragma once
// What the partition and runtime code read weights through, whatever the model file's format:
// a layer's weights (Keras names, shapes and element order, see Layer::weight_specs()), whole
// or a slice of one. KerasWeightReader reads HDF5 hyperslabs; OnnxWeightReader reads each ONNX
// initializer from the file when asked and converts it, a Dense matrix's or a convolution
// kernel's slice alone.
#include <cstdint>
#include <string>
#include <vector>

#include "layers/layer.h"
#include "model/model.h"

namespace chorus::io {

// Part of a weight to read: indices [begin, end) along axis; axis -1 reads it whole.
struct WeightSlice {
  int axis = -1;
  std::int64_t begin = 0, end = 0;
};

class WeightReader {
 public:
  virtual ~WeightReader() = default;
  // Reads weight `wanted` (Keras name and full shape) of the imported layer `source`
  // (Node::source), whole or sliced. Throws chorus::Error naming the file, layer and weight.
  virtual std::vector<float> read(int source, const layers::WeightSpec& wanted, WeightSlice slice = {}) = 0;
  // The file the weights come from, for messages.
  virtual const std::string& path() const = 0;

  // Reads all weights of a layer whole.
  layers::WeightMap read_all(int source, const std::vector<layers::WeightSpec>& wanted);
  // Loads a node whole: its weights, its folded batch norms' weights, then the folds.
  void load_node(model::Node& node);
};

// Copies indices [begin, end) along `axis` of a row-major array of shape `dims`.
std::vector<float> slice_axis(const std::vector<float>& values, const std::vector<int>& dims, int axis,
                              std::int64_t begin, std::int64_t end);

}  // namespace chorus::io
