#pragma once
// Reads a Keras model config (the `model_config` attribute of a full-model .h5, or a
// `model.to_json()` / `model.to_yaml()` file) into a flat, topologically ordered list of
// layers. Handles Sequential (old list style and dict style), Functional graphs of several
// inputs and outputs, nested models (flattened into the outer graph; a nested model called
// again adds its layers again, sharing the first call's weights) and Keras 3's config keys.
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace chorus::io {

// One step of the path where Keras' saving library (.keras archives, Keras 3 .weights.h5) keeps
// a layer's variables. It names a model's layers by class, not by their own names: the second
// Dense layer of a model is layers/dense_1 whatever the user called it. A step is the class in
// snake case and the layer's ordinal among its model's layers of that class.
struct KerasSavedStep {
  std::string class_key;  // "dense", "conv2d", "batch_normalization", "functional"
  int ordinal = 0;        // 0 for the first such layer of its model
};

struct KerasLayerSpec {
  std::string name;                  // unique within the flattened model
  std::string class_name;            // "Conv2D"
  nlohmann::json config;             // the layer's Keras config
  std::vector<std::string> inbound;  // producing layers' or model inputs' names
  std::string weight_group;          // top-level layer whose HDF5 group holds the weights
  std::string weight_owner;          // the layer's own name inside that group (differs for nested models)
  int shares_weights_of = -1;        // a shared layer's later call: the index of its first call
  std::vector<KerasSavedStep> saved_path;  // the nested models holding it, outermost first, then
                                           // the layer itself (empty for a shared layer's later call)
};

struct KerasInputSpec {
  std::string name;
  std::vector<int> shape;  // without the batch axis, as Keras gives it
};

struct KerasModelSpec {
  std::string name;
  std::vector<KerasInputSpec> inputs;  // the model's inputs, in its input_layers order
  std::vector<KerasLayerSpec> layers;
  std::vector<std::string> outputs;    // the layers producing the model's outputs, in order
  bool channels_first = false;  // some layer declares data_format channels_first
  bool keras3 = false;
};

// Parses a model config. `source` names the file in error messages. `keras_version` is the
// file's attribute when known ("" otherwise); Keras 3 is also recognised from the config.
KerasModelSpec parse_keras_config(const nlohmann::json& config, const std::string& source,
                                  const std::string& keras_version = "");

// Keras' name for a class in saved weight paths: "BatchNormalization" -> "batch_normalization",
// "Conv2D" -> "conv2d", "ReLU" -> "re_lu" (keras.utils' to_snake_case).
std::string keras_snake_case(const std::string& class_name);

// Reads an architecture file: JSON (to_json) or YAML (to_yaml), chosen by content.
nlohmann::json read_architecture_file(const std::string& path);

// Converts YAML text to JSON (exposed for tests).
nlohmann::json yaml_to_json(const std::string& text, const std::string& source);

}  // namespace chorus::io
