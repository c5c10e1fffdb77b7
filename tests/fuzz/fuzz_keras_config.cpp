// Keras model configurations (model.to_json() or YAML) through to a built graph.
#include <nlohmann/json.hpp>
#include <string>

#include "core/error.h"
#include "fuzz_targets.h"
#include "io/keras/keras_config.h"
#include "io/keras/keras_model.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  try {
    nlohmann::json config;
    try {
      config = nlohmann::json::parse(text);
    } catch (const nlohmann::json::exception&) {
      config = chorus::io::yaml_to_json(text, "fuzz.yaml");
    }
    auto spec = chorus::io::parse_keras_config(config, "fuzz.json");
    chorus::io::build_keras_model(spec, "fuzz.json");
  } catch (const chorus::Error&) {
  }
  return 0;
}
