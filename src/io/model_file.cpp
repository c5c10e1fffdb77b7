#include "io/model_file.h"

#include <algorithm>
#include <cctype>
#include <cstring>
#include <filesystem>
#include <fstream>

#include "core/error.h"
#include "io/hdf5/hdf5_file.h"
#include "io/keras/keras_archive.h"
#include "io/keras/keras_model.h"

namespace chorus::io {

ModelFormat model_format(const std::string& path) {
  std::string ext = std::filesystem::path(path).extension().string();
  std::transform(ext.begin(), ext.end(), ext.begin(), [](unsigned char c) { return std::tolower(c); });
  // HDF5's and zip's signatures are unambiguous, so they win over the name: an HDF5 file named
  // .onnx is read as the Keras file it is, not refused as a broken ONNX file.
  char head[8] = {};
  std::ifstream in(path, std::ios::binary);
  const bool read = static_cast<bool>(in.read(head, sizeof head));
  if (read && std::memcmp(head, "\x89HDF\r\n\x1a\n", 8) == 0) return ModelFormat::keras_h5;
  if (read && std::memcmp(head, "PK\x03\x04", 4) == 0) return ModelFormat::keras_archive;
  if (ext == ".onnx") return ModelFormat::onnx;
  if (ext == ".keras") return ModelFormat::keras_archive;
  if (!read) return ModelFormat::keras_h5;
  // A ModelProto starts with its ir_version: field 1, a varint (tag byte 0x08).
  return head[0] == 0x08 ? ModelFormat::onnx : ModelFormat::keras_h5;
}

ModelStructure load_model_structure(const std::string& path, const std::string& arch_path, bool optimize) {
  if (std::filesystem::exists(std::filesystem::path(path) / "saved_model.pb"))
    fail(path,
         ": is a TensorFlow SavedModel directory, which Chorus does not read: save the model with "
         "model.save(\"model.keras\") (or .h5), or export it to ONNX");
  refuse_directory(path, "a model file (.h5, .keras or .onnx)");
  ModelStructure s;
  s.path = path;
  s.format = model_format(path);
  if (s.format == ModelFormat::onnx) {
    if (!arch_path.empty()) fail(path, ": --arch is for Keras weights-only files; an ONNX file holds its own graph");
    OnnxModelStructure onnx = load_onnx_structure(path, optimize);
    s.model = std::move(onnx.model);
    s.onnx = std::move(onnx.weights);
    s.source = path;
    return s;
  }
  if (s.format == ModelFormat::keras_archive && !arch_path.empty())
    fail(path, ": --arch is for Keras weights-only .h5 files; a .keras archive holds its own graph");
  KerasModelStructure keras = s.format == ModelFormat::keras_archive ? load_keras_archive_structure(path, optimize)
                                                                     : load_keras_structure(path, arch_path, optimize);
  s.model = std::move(keras.model);
  s.keras = std::make_shared<const KerasModelSpec>(std::move(keras.spec));
  s.source = keras.source;
  return s;
}

std::unique_ptr<WeightReader> open_weight_reader(const ModelStructure& s) {
  if (s.format == ModelFormat::onnx) return std::make_unique<OnnxWeightReader>(s.path, s.onnx);
  if (s.format == ModelFormat::keras_archive) return std::make_unique<KerasArchiveWeightReader>(s.path, *s.keras);
  if (is_keras3_weights_file(H5File(s.path)))
    return std::make_unique<KerasArchiveWeightReader>(s.path, *s.keras, KerasWeightsSource::weights_file);
  return std::make_unique<KerasWeightReader>(s.path, *s.keras);
}

model::Model load_model_file(const std::string& path, const ModelLoadOptions& options) {
  ModelStructure s = load_model_structure(path, options.arch_path, options.optimize);
  if (options.load_weights) {
    auto reader = open_weight_reader(s);
    for (auto& node : s.model.nodes()) reader->load_node(node);
  }
  return std::move(s.model);
}

}  // namespace chorus::io
