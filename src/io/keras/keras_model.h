#pragma once
// Loads a Keras HDF5 model: a full-model file (model_config + model_weights), or a
// weights-only file together with an architecture file (to_json / to_yaml). Weights are
// matched to layers by name, never by position.
#include <functional>
#include <string>

#include "io/keras/keras_config.h"
#include "io/weight_reader.h"
#include "model/model.h"
#include "model/optimize.h"

namespace chorus::io {

struct KerasLoadOptions {
  std::string arch_path;  // architecture file; required for weights-only files
  bool optimize = true;   // fold batch norms and fuse activations after loading
  bool load_weights = true;
};

// Throws chorus::Error naming the file, layer and weight, with what was expected and found.
model::Model load_keras_model(const std::string& path, const KerasLoadOptions& options = {});

// The model's graph, optimised if asked, without weights: what every rank builds first.
struct KerasModelStructure {
  model::Model model;
  KerasModelSpec spec;
  std::string source;  // the file that held the config, for messages
};
KerasModelStructure load_keras_structure(const std::string& path, const std::string& arch_path, bool optimize);

// Finds a layer's weights in a Keras HDF5 file by name and reads them, whole or in slices
// (hyperslabs: only the part asked for is read). `spec` must outlive the reader.
class KerasWeightReader : public WeightReader {
 public:
  KerasWeightReader(const std::string& path, const KerasModelSpec& spec);
  ~KerasWeightReader() override;
  // Reads weight `wanted` (Keras name and full shape) of layer spec.layers[source].
  std::vector<float> read(int source, const layers::WeightSpec& wanted, WeightSlice slice = {}) override;
  const std::string& path() const override;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// True for .json/.yaml/.yml files: architectures without weights.
bool is_architecture_file(const std::string& path);

// Builds the model (shapes only, no weights) from a parsed config.
model::Model build_keras_model(const KerasModelSpec& spec, const std::string& source);

// The model config JSON of a file: its model_config attribute, or the architecture file.
nlohmann::json read_keras_config(const std::string& path, const std::string& arch_path, std::string* keras_version);

}  // namespace chorus::io
