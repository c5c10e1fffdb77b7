#include "cli/load_model.h"

#include "core/error.h"
#include "core/random.h"
#include "io/keras/keras_model.h"
#include "io/model_file.h"
#include "model/optimize.h"

namespace chorus::cli {

LoadedModel load_model(const std::string& path, const std::string& arch_path, bool optimize, bool load_weights) {
  if (io::is_architecture_file(path)) {
    if (!arch_path.empty())
      fail(path, ": is an architecture file already; --arch names the architecture of a weights-only .h5");
    auto config = io::read_architecture_file(path);
    auto spec = io::parse_keras_config(config, path);
    model::Model m = io::build_keras_model(spec, path);
    if (optimize) model::optimize(m);
    return LoadedModel{std::move(m), false};
  }
  io::ModelLoadOptions options;
  options.arch_path = arch_path;
  options.optimize = optimize;
  options.load_weights = load_weights;
  return LoadedModel{io::load_model_file(path, options), true};
}

model::Model load_model_with_weights(const std::string& path, const std::string& arch_path) {
  // The Keras importer refuses architecture files with a message saying how to get weights.
  io::ModelLoadOptions options;
  options.arch_path = arch_path;
  return io::load_model_file(path, options);
}

std::vector<Tensor> random_inputs(const model::Model& model, int frames, std::uint64_t seed) {
  Rng rng(seed);
  std::vector<Tensor> inputs;
  for (const auto& in : model.inputs()) {
    inputs.emplace_back(frames, in.shape);
    for (std::size_t i = 0; i < inputs.back().size(); ++i) inputs.back().data()[i] = rng.uniform();
  }
  return inputs;
}

std::vector<const Tensor*> tensor_pointers(const std::vector<Tensor>& tensors) {
  std::vector<const Tensor*> out;
  for (const auto& t : tensors) out.push_back(&t);
  return out;
}

}  // namespace chorus::cli
