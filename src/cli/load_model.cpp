#include "cli/load_model.h"

#include <filesystem>

#include "core/error.h"
#include "io/keras_model.h"
#include "model/optimize.h"

namespace chorus::cli {

namespace {
bool is_architecture_file(const std::string& path) {
  std::string ext = std::filesystem::path(path).extension().string();
  return ext == ".json" || ext == ".yaml" || ext == ".yml";
}
}  // namespace

LoadedModel load_model(const std::string& path, const std::string& arch_path, bool optimize, bool load_weights) {
  if (is_architecture_file(path)) {
    auto config = io::read_architecture_file(path);
    auto spec = io::parse_keras_config(config, path);
    model::Model m = io::build_keras_model(spec, path);
    if (optimize) model::optimize(m);
    return LoadedModel{std::move(m), false};
  }
  std::string ext = std::filesystem::path(path).extension().string();
  if (ext == ".keras")
    fail(path, ": Keras 3 .keras (zip) files are not read; save the model with model.save('model.h5')");
  io::KerasLoadOptions options;
  options.arch_path = arch_path;
  options.optimize = optimize;
  options.load_weights = load_weights;
  return LoadedModel{io::load_keras_model(path, options), load_weights};
}

model::Model load_model_with_weights(const std::string& path, const std::string& arch_path) {
  if (is_architecture_file(path))
    fail(path, ": this is an architecture file without weights; make weights with `chorus init-weights ", path,
         " -o model.h5`, or pass your weights .h5 as MODEL and this file with --arch");
  return load_model(path, arch_path).model;
}

}  // namespace chorus::cli
