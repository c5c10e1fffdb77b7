#pragma once
// Helpers shared by the test suites: random data, temporary files, the shared sample folder,
// models from inline JSON, and running the chorus binary.
#include <gtest/gtest.h>

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "io/keras/keras_config.h"
#include "layers/layer.h"
#include "model/model.h"
#include "tensor/tensor.h"

namespace chorus::test {

Tensor random_tensor(int frames, Shape shape, std::uint64_t seed, float lo = -1.0f, float hi = 1.0f);
std::vector<float> random_vector(std::size_t n, std::uint64_t seed, float lo = -1.0f, float hi = 1.0f);

// A fresh directory under the build tree's temp area, removed at exit of the test.
class TempDir {
 public:
  TempDir();
  ~TempDir();
  std::string path(const std::string& name) const { return dir_ + "/" + name; }

 private:
  std::string dir_;
};

// ../shared/keras-samples (or "" when absent: tests then GTEST_SKIP with a message).
std::string shared_samples_dir();
#define CHORUS_REQUIRE_SHARED(dir)                                                                 \
  const std::string dir = ::chorus::test::shared_samples_dir();                                  \
  if (dir.empty()) GTEST_SKIP() << "../shared/keras-samples is not beside this clone; skipping"

std::string source_path(const std::string& relative);  // a file in the repository

// Writes `config_json` with deterministic random weights to `h5_path` (a Keras 3 .keras archive
// when it ends in .keras) and returns the spec.
io::KerasModelSpec write_random_model(const std::string& config_json, const std::string& h5_path,
                                      std::uint64_t seed = 1);

// A Keras model from an inline config (built, no weights) and random weights for its layers, for
// tests that write it in several layouts.
struct KerasTestModel {
  nlohmann::json config;
  io::KerasModelSpec spec;
  model::Model model;
  std::vector<layers::WeightMap> weights;
};
KerasTestModel random_keras_model(const std::string& config_json, std::uint64_t seed);

struct CommandResult {
  int exit_code = -1;
  std::string output;  // stdout and stderr together
};
// Runs a shell command, capturing stdout and stderr together.
CommandResult run_command(const std::string& command);
// Runs the chorus binary with these arguments (a shell command line fragment).
CommandResult run_chorus(const std::string& args);

// The message of the chorus::Error `f` throws, or a marker that fails every HasSubstr.
std::string error_of(const std::function<void()>& f);

// Largest difference over the largest reference magnitude: Winograd's and long sums' rounding
// grows with the whole sum, not with each output, so small outputs are judged against the large
// ones.
double error_vs_largest(const Tensor& out, const Tensor& expected);
// The same between two .npy files (infinity when their shapes differ).
double npy_error_vs_largest(const std::string& out_path, const std::string& expected_path);

// Builds a layer against input shapes and gives it weights.
void build_layer(layers::Layer& layer, const std::vector<Shape>& inputs, layers::WeightMap weights = {});

// A position-wise layer's output computed over random runs of positions (crossing frames) with
// Layer::forward_positions, as a split stage computes it behind a reduction: compare it with
// forward(). Pass `out` == in[0] to compute in place.
void forward_in_position_runs(const layers::Layer& layer, const std::vector<const Tensor*>& in, Tensor& out,
                              std::uint64_t seed);

}  // namespace chorus::test
