// keras.applications models as users have them: the zoo's EfficientNetB0 (squeeze-and-excitation,
// swish, Keras' asymmetric padding of stride-2 convolutions, Normalization with stored
// statistics) against PyTorch, and as the nested base of a transfer-learning .keras archive.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <fstream>
#include <nlohmann/json.hpp>

#include "io/data/npy.h"
#include "reference/test_util.h"

using namespace chorus;
using nlohmann::json;

namespace {

json read_json(const std::string& path) {
  std::ifstream in(path);
  return json::parse(in);
}

// The zoo's EfficientNetB0 with a linear classifier: logits compare more sharply than softmax
// probabilities of random weights, which are all near 1/1000.
json efficientnet_with_logits() {
  json config = read_json(test::source_path("models/efficientnetb0.json"));
  for (auto& layer : config["config"]["layers"])
    if (layer["config"]["name"] == "predictions") layer["config"]["activation"] = "linear";
  return config;
}

// Two frames of pixel values in [0, 255], NHWC.
std::string write_pixels(const test::TempDir& dir) {
  const Tensor x = test::random_tensor(2, {224, 224, 3}, 11, 0.0f, 255.0f);
  const std::string path = dir.path("x.npy");
  io::write_npy(path, {2, 224, 224, 3}, x.data());
  return path;
}

// The zoo's EfficientNetB0 with logits and seeded random weights, as DIR/effnet.h5.
std::string write_efficientnet(const test::TempDir& dir, int seed) {
  std::ofstream(dir.path("effnet.json")) << efficientnet_with_logits().dump();
  const std::string h5 = dir.path("effnet.h5");
  const auto r = test::run_chorus("init-weights " + dir.path("effnet.json") + " --seed " + std::to_string(seed) + " -o " + h5);
  EXPECT_EQ(r.exit_code, 0) << r.output;
  return h5;
}

// `chorus run MODEL --input X --output OUT` on one process.
void run_one_process(const std::string& model, const std::string& x, const std::string& out) {
  const auto r = test::run_chorus("run " + model + " --input " + x + " --quiet --output " + out);
  ASSERT_EQ(r.exit_code, 0) << r.output;
}

// max |a - b| over max |b|.
double relative_error(const std::string& a_path, const std::string& b_path) {
  const io::NpyArray a = io::read_npy(a_path), b = io::read_npy(b_path);
  EXPECT_EQ(a.shape, b.shape);
  if (a.data.size() != b.data.size()) return 1e9;
  double worst = 0, scale = 0;
  for (std::size_t i = 0; i < a.data.size(); ++i) {
    worst = std::max(worst, static_cast<double>(std::fabs(a.data[i] - b.data[i])));
    scale = std::max(scale, static_cast<double>(std::fabs(b.data[i])));
  }
  return worst / scale;
}

}  // namespace

// torchvision's efficientnet_b0 with the Keras file's weights, padded and normalised as Keras
// does it (tests/data/keras_efficientnet_reference.py), gives Chorus' outputs.
TEST(KerasApplications, EfficientNetB0MatchesPyTorchWithin1e4) {
  if (test::run_command("/usr/bin/python3 -c 'import torch, torchvision, h5py'").exit_code != 0)
    GTEST_SKIP() << "python3-torch, python3-torchvision or python3-h5py is not installed";
  test::TempDir dir;
  const std::string model = write_efficientnet(dir, 4), x = write_pixels(dir);
  run_one_process(model, x, dir.path("chorus.npy"));
  auto theirs = test::run_command("/usr/bin/python3 " + test::source_path("tests/data/keras_efficientnet_reference.py") +
                                  " " + model + " " + x + " " + dir.path("torch.npy"));
  ASSERT_EQ(theirs.exit_code, 0) << theirs.output;
  const double error = relative_error(dir.path("chorus.npy"), dir.path("torch.npy"));
  std::cout << "EfficientNetB0 against PyTorch: " << error << " of the largest logit\n";
  EXPECT_LT(error, 1e-4);
}

// A transfer-learning model as Keras 3 saves one: EfficientNetB0 without its top, nested as a
// base under its own name, and the head outside it, in a .keras archive (weights by position,
// under layers/efficientnetb0/layers/...). Its layers have the flat model's names, so
// init-weights gives them the same weights, and the outputs must be the flat .h5 model's.
TEST(KerasApplications, EfficientNetB0AsANestedBaseInAKerasArchiveGivesTheFlatModelsOutputs) {
  test::TempDir dir;
  const json flat = efficientnet_with_logits();
  json base = flat;
  json& layers = base["config"]["layers"];
  json head = json::array();
  for (auto it = layers.begin(); it != layers.end();)
    if (it->at("name") == "avg_pool" || it->at("name") == "top_dropout" || it->at("name") == "predictions") {
      head.push_back(*it);
      it = layers.erase(it);
    } else {
      ++it;
    }
  ASSERT_EQ(head.size(), 3u);
  base["config"]["output_layers"] = json::parse(R"([["top_activation", 0, 0]])");
  base["name"] = base["config"]["name"] = "efficientnetb0";
  base["inbound_nodes"] = json::parse(R"([[["image", 0, 0, {}]]])");
  head[0]["inbound_nodes"] = json::parse(R"([[["efficientnetb0", 0, 0, {}]]])");
  json transfer_layers = json::array();
  transfer_layers.push_back({{"class_name", "InputLayer"},
                             {"name", "image"},
                             {"config", {{"name", "image"}, {"batch_input_shape", {nullptr, 224, 224, 3}}}},
                             {"inbound_nodes", json::array()}});
  transfer_layers.push_back(base);
  for (const auto& h : head) transfer_layers.push_back(h);
  const json transfer = {{"class_name", "Functional"},
                         {"config",
                          {{"name", "transfer"},
                           {"layers", transfer_layers},
                           {"input_layers", json::parse(R"([["image", 0, 0]])")},
                           {"output_layers", json::parse(R"([["predictions", 0, 0]])")}}},
                         {"keras_version", "3.6.0"}};
  std::ofstream(dir.path("flat.json")) << flat.dump();
  std::ofstream(dir.path("transfer.json")) << transfer.dump();
  ASSERT_EQ(test::run_chorus("init-weights " + dir.path("flat.json") + " --seed 9 -o " + dir.path("flat.h5")).exit_code,
            0);
  ASSERT_EQ(
      test::run_chorus("init-weights " + dir.path("transfer.json") + " --seed 9 -o " + dir.path("transfer.keras"))
          .exit_code,
      0);
  const std::string x = write_pixels(dir);
  for (const char* name : {"flat.h5", "transfer.keras"}) run_one_process(dir.path(name), x, dir.path(name) + ".npy");
  EXPECT_EQ(relative_error(dir.path("transfer.keras.npy"), dir.path("flat.h5.npy")), 0.0);
  auto info = test::run_chorus("info " + dir.path("transfer.keras"));
  ASSERT_EQ(info.exit_code, 0) << info.output;
  EXPECT_THAT(info.output, testing::HasSubstr("block7a_se_excite"));
}

// Rescaling and Normalization act on each pixel alone, so they run inside row bands: the input
// is scaled in the first split-spatial stage, not on one rank before it; three ranks give one
// process's outputs.
TEST(KerasApplications, EfficientNetB0InRowBandsFromItsInputLayersOn) {
  test::TempDir dir;
  const std::string model = write_efficientnet(dir, 5), x = write_pixels(dir);
  run_one_process(model, x, dir.path("one.npy"));
  setenv("OMPI_ALLOW_RUN_AS_ROOT", "1", 1);
  setenv("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1", 1);
  auto three = test::run_command("timeout -k 5 300 mpiexec --oversubscribe -np 3 " CHORUS_BINARY " run " + model +
                                 " --input " + x + " --strategy split-spatial --output " +
                                 dir.path("three.npy") + " --quiet");
  ASSERT_EQ(three.exit_code, 0) << three.output;
  EXPECT_THAT(three.output, testing::HasSubstr("plan        rescaling..block1a_dwconv split-spatial [0,1,2]"));
  EXPECT_LT(relative_error(dir.path("three.npy"), dir.path("one.npy")), 1e-5);
}
