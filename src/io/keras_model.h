#pragma once
// Loads a Keras HDF5 model: a full-model file (model_config + model_weights), or a
// weights-only file together with an architecture file (to_json / to_yaml). Weights are
// matched to layers by name, never by position.
#include <functional>
#include <string>

#include "io/keras_config.h"
#include "model/model.h"
#include "model/optimize.h"

namespace chorus::io {

struct KerasLoadOptions {
  std::string arch_path;   // architecture file; required for weights-only files
  bool optimize = true;    // fold batch norms and fuse activations after loading
  bool load_weights = true;
};

// Throws chorus::Error naming the file, layer and weight, with what was expected and found.
model::Model load_keras_model(const std::string& path, const KerasLoadOptions& options = {});

// Builds the model (shapes only, no weights) from a parsed config.
model::Model build_keras_model(const KerasModelSpec& spec, const std::string& source);

// The model config JSON of a file: its model_config attribute, or the architecture file.
nlohmann::json read_keras_config(const std::string& path, const std::string& arch_path, std::string* keras_version);

}  // namespace chorus::io
