#include "reference/test_util.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <limits>

#include "core/error.h"
#include "core/random.h"
#include "io/data/npy.h"
#include "io/keras/keras_model.h"
#include "io/keras/keras_writer.h"

namespace chorus::test {

Tensor random_tensor(int frames, Shape shape, std::uint64_t seed, float lo, float hi) {
  Tensor t(frames, shape);
  Rng rng(seed);
  for (std::size_t i = 0; i < t.size(); ++i) t.data()[i] = rng.uniform(lo, hi);
  return t;
}

std::vector<float> random_vector(std::size_t n, std::uint64_t seed, float lo, float hi) {
  std::vector<float> v(n);
  Rng rng(seed);
  for (auto& x : v) x = rng.uniform(lo, hi);
  return v;
}

TempDir::TempDir() {
  static int counter = 0;
  dir_ = (std::filesystem::temp_directory_path() /
          ("chorus_test_" + std::to_string(::getpid()) + "_" + std::to_string(counter++)))
             .string();
  std::filesystem::create_directories(dir_);
}

TempDir::~TempDir() {
  std::error_code ec;
  std::filesystem::remove_all(dir_, ec);
}

std::string shared_samples_dir() {
  std::string dir = std::string(CHORUS_SHARED_DIR) + "/keras-samples";
  return std::filesystem::exists(dir + "/README.md") ? dir : "";
}

std::string source_path(const std::string& relative) { return std::string(CHORUS_SOURCE_DIR) + "/" + relative; }

io::KerasModelSpec write_random_model(const std::string& config_json, const std::string& h5_path, std::uint64_t seed) {
  auto config = nlohmann::json::parse(config_json);
  auto spec = io::parse_keras_config(config, "test config");
  auto m = io::build_keras_model(spec, "test config");
  if (h5_path.size() > 6 && h5_path.substr(h5_path.size() - 6) == ".keras")
    io::write_keras_archive(h5_path, config, spec, m, io::random_keras_weights(m, spec, seed));
  else
    io::write_keras_h5(h5_path, config, spec, m, io::random_keras_weights(m, spec, seed));
  return spec;
}

KerasTestModel random_keras_model(const std::string& config_json, std::uint64_t seed) {
  KerasTestModel m;
  m.config = nlohmann::json::parse(config_json);
  m.spec = io::parse_keras_config(m.config, "test");
  m.model = io::build_keras_model(m.spec, "test");
  m.weights = io::random_keras_weights(m.model, m.spec, seed);
  return m;
}

CommandResult run_chorus(const std::string& args) { return run_command(std::string(CHORUS_BINARY) + " " + args); }

CommandResult run_command(const std::string& command) {
  const std::string cmd = command + " 2>&1";
  CommandResult result;
  FILE* pipe = popen(cmd.c_str(), "r");
  if (!pipe) return result;
  char buffer[4096];
  std::size_t n;
  while ((n = fread(buffer, 1, sizeof buffer, pipe)) > 0) result.output.append(buffer, n);
  int status = pclose(pipe);
  result.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return result;
}

void build_layer(layers::Layer& layer, const std::vector<Shape>& inputs, layers::WeightMap weights) {
  layer.build(inputs);
  layer.set_weights(std::move(weights));
}

void forward_in_position_runs(const layers::Layer& layer, const std::vector<const Tensor*>& in, Tensor& out,
                              std::uint64_t seed) {
  EXPECT_TRUE(layer.positionwise()) << layer.name();
  const Shape s = layer.output_shape();
  const std::int64_t positions = static_cast<std::int64_t>(in[0]->frames()) * s.rows() * s.w;
  if (&out != in[0]) out.resize(in[0]->frames(), s);
  Rng rng(seed);
  for (std::int64_t p0 = 0; p0 < positions;) {
    const std::int64_t p1 = std::min(positions, p0 + 1 + static_cast<std::int64_t>(rng.next_u64() % 7));
    layer.forward_positions(in, out, p0, p1);
    p0 = p1;
  }
}

double error_vs_largest(const Tensor& out, const Tensor& expected) {
  double largest = 1e-30, worst = 0;
  for (std::size_t i = 0; i < expected.size(); ++i) {
    largest = std::max(largest, std::fabs(double(expected.data()[i])));
    worst = std::max(worst, std::fabs(double(out.data()[i]) - expected.data()[i]));
  }
  return worst / largest;
}

double npy_error_vs_largest(const std::string& out_path, const std::string& expected_path) {
  const io::NpyArray out = io::read_npy(out_path), expected = io::read_npy(expected_path);
  if (out.shape != expected.shape) return std::numeric_limits<double>::infinity();
  double largest = 1e-30, worst = 0;
  for (std::size_t i = 0; i < expected.data.size(); ++i) {
    largest = std::max(largest, std::fabs(double(expected.data[i])));
    worst = std::max(worst, std::fabs(double(out.data[i]) - expected.data[i]));
  }
  return worst / largest;
}

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "<no chorus::Error thrown>";
}

}  // namespace chorus::test
