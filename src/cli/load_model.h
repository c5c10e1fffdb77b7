#pragma once
// Opens whatever the user names as MODEL: a Keras .h5 (full model, or weights-only with
// --arch), an ONNX .onnx file, or a Keras architecture file alone (.json/.yaml: shapes and
// costs, no weights).
#include <cstdint>
#include <string>
#include <vector>

#include "model/model.h"

namespace chorus::cli {

struct LoadedModel {
  model::Model model;
  bool has_weights = true;  // the file holds weights (loaded or not): false for an architecture file
};

// `optimize` folds batch norms and fuses activations (off for `info --raw`); without
// `load_weights` only the graph is built (plans need no weights).
LoadedModel load_model(const std::string& path, const std::string& arch_path, bool optimize = true,
                       bool load_weights = true);

// Same, but throws a helpful error when the file has no weights (run, bench).
model::Model load_model_with_weights(const std::string& path, const std::string& arch_path);

// A batch of `frames` frames of uniform noise per model input (bench, profile), from `seed`.
std::vector<Tensor> random_inputs(const model::Model& model, int frames, std::uint64_t seed);
// The addresses of `tensors`, as Model::forward takes them.
std::vector<const Tensor*> tensor_pointers(const std::vector<Tensor>& tensors);

}  // namespace chorus::cli
