#pragma once
// Writes Keras HDF5 files in the layouts the importer reads: used by `chorus init-weights`
// (deterministic random weights for the model zoo) and by the importer's tests.
#include <cstdint>
#include <string>
#include <vector>

#include "io/keras/keras_config.h"
#include "layers/layer.h"
#include "model/model.h"

namespace chorus::io {

enum class KerasLayout {
  keras2,        // tf.keras 2.x full model: model_config + model_weights/<layer>/<layer>/<w>:0
  keras3,        // Keras 3 legacy .h5: variable-length strings, weight paths without ":0"
  weights_only,  // save_weights(): layer groups at the root, no model_config
};

// Writes `config` and one WeightMap per layer of `spec`. `model` is the unoptimised model
// built from spec (node i is spec.layers[i]); it gives each weight's shape.
void write_keras_h5(const std::string& path, const nlohmann::json& config, const KerasModelSpec& spec,
                    const model::Model& model, const std::vector<layers::WeightMap>& weights,
                    KerasLayout layout = KerasLayout::keras2);

// Writes a Keras 3 .keras archive as Keras 3 saves one: metadata.json, config.json, and
// model.weights.h5 with each layer's variables by position under Keras' class-numbered names
// (layers/dense_1/vars/<i>, nested models' layers under layers/functional/layers/), stored, or
// deflated if asked.
void write_keras_archive(const std::string& path, const nlohmann::json& config, const KerasModelSpec& spec,
                         const model::Model& model, const std::vector<layers::WeightMap>& weights,
                         bool deflate_weights = false);

// Deterministic random weights for every layer of an unoptimised model built from `spec`:
// He-uniform kernels, small biases, batch-norm statistics near identity. Each layer's values
// depend only on `seed` and the layer's name.
std::vector<layers::WeightMap> random_keras_weights(const model::Model& model, const KerasModelSpec& spec,
                                                    std::uint64_t seed);

// `chorus init-weights`: reads an architecture file and writes a full-model .h5, or a .keras
// archive when `out_path` ends in .keras.
void init_keras_weights(const std::string& arch_path, std::uint64_t seed, const std::string& out_path);

}  // namespace chorus::io
