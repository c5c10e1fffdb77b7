// Plan files, checked against a small model with every kind of stage (a global pooling may end
// a split-spatial one).
#include <nlohmann/json.hpp>
#include <string>

#include "core/error.h"
#include "fuzz_targets.h"
#include "io/keras/keras_config.h"
#include "io/keras/keras_model.h"
#include "plan/plan.h"
#include "plan/validate.h"

namespace {

const char* kModel = R"({"class_name": "Sequential", "config": {"name": "m", "layers": [
  {"class_name": "Conv2D", "config": {"name": "c1", "filters": 4, "kernel_size": [3, 3], "padding": "same",
   "activation": "relu", "batch_input_shape": [null, 12, 12, 3]}},
  {"class_name": "DepthwiseConv2D", "config": {"name": "dw", "kernel_size": [3, 3], "padding": "same"}},
  {"class_name": "MaxPooling2D", "config": {"name": "pool", "pool_size": [2, 2]}},
  {"class_name": "GlobalAveragePooling2D", "config": {"name": "gap"}},
  {"class_name": "Dense", "config": {"name": "fc", "units": 5, "activation": "softmax"}}]}})";

const chorus::model::Model& model() {
  static chorus::model::Model m = [] {
    auto spec = chorus::io::parse_keras_config(nlohmann::json::parse(kModel), "model");
    return chorus::io::build_keras_model(spec, "model");
  }();
  return m;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const chorus::model::Model& m = model();
  nlohmann::json j;
  if (!chorus::fuzz::parse_json(data, size, j)) return 0;
  try {
    auto plan = chorus::plan::plan_from_json(j, "fuzz.json");
    chorus::plan::validate_plan(plan, m, 0);
  } catch (const chorus::Error&) {
  }
  return 0;
}
