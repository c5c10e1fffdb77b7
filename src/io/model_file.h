#pragma once
// Opens a model file whatever its format (Keras HDF5 or ONNX): the graph every rank builds
// first, and a reader for the weights each rank then takes its share of. The partition and
// runtime code use only this and io::WeightReader.
#include <memory>
#include <string>

#include "io/keras/keras_config.h"
#include "io/onnx/onnx_model.h"
#include "io/weight_reader.h"
#include "model/model.h"

namespace chorus::io {

enum class ModelFormat { keras_h5, keras_archive, onnx };

// ONNX for `.onnx` names and for files that start like an ONNX protobuf and not like HDF5;
// a Keras 3 archive for `.keras` names and zip files; Keras HDF5 otherwise (whose reader
// explains files it cannot open).
ModelFormat model_format(const std::string& path);

// A model's graph, optimised if asked, without weights.
struct ModelStructure {
  model::Model model;
  ModelFormat format = ModelFormat::keras_h5;
  std::string path;    // the model file (weights)
  std::string source;  // the file that held the graph (a Keras architecture file), for messages
  std::shared_ptr<const KerasModelSpec> keras;  // Keras: the parsed config
  std::shared_ptr<const OnnxWeightPlan> onnx;   // ONNX: how each layer's weights are made
};

// `arch_path` is a Keras architecture file for weights-only .h5 files ("" otherwise; refused for
// ONNX and .keras files, which hold their graph). Throws chorus::Error naming the file and layer.
ModelStructure load_model_structure(const std::string& path, const std::string& arch_path, bool optimize);

// A reader of the structure's weights from its file. The structure must outlive it.
std::unique_ptr<WeightReader> open_weight_reader(const ModelStructure& structure);

struct ModelLoadOptions {
  std::string arch_path;  // Keras weights-only files
  bool optimize = true;   // fold batch norms and fuse activations
  bool load_weights = true;
};

// The whole model in one process: structure, then every node's weights.
model::Model load_model_file(const std::string& path, const ModelLoadOptions& options = {});

}  // namespace chorus::io
