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
std::string write_pixels(const test::TempDir& dir, int size = 224) {
  const Tensor x = test::random_tensor(2, {size, size, 3}, 11, 0.0f, 255.0f);
  const std::string path = dir.path("x.npy");
  io::write_npy(path, {2, size, size, 3}, x.data());
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

// keras.applications' ResNet50 (a Functional base) and VGG16 (a Sequential one, as the zoo has
// it) nested without their tops under their own names in a .keras archive, on 64x64 images,
// with a pooling and a 10-unit head outside: the outputs equal the flat model's with the same
// layers (init-weights seeds each layer by its name), and the nested layers are listed.
TEST(KerasApplications, ResNet50AndVgg16AsNestedBasesGiveTheFlatModelsOutputs) {
  struct Base {
    const char* zoo;
    const char* last;  // the base's last layer: those after it are its top
  };
  for (const Base& b : {Base{"resnet50", "conv5_block3_out"}, Base{"vgg16", "block5_pool"}}) {
    SCOPED_TRACE(b.zoo);
    test::TempDir dir;
    json base = read_json(test::source_path(std::string("models/") + b.zoo + ".json"));
    const bool functional = base["class_name"] == "Functional";
    json& layers = base["config"]["layers"];
    const auto name_of = [](const json& l) { return l["config"]["name"].get<std::string>(); };
    auto last = std::find_if(layers.begin(), layers.end(), [&](const json& l) { return name_of(l) == b.last; });
    ASSERT_NE(last, layers.end());
    layers.erase(last + 1, layers.end());
    layers[0]["config"]["batch_input_shape"] = {nullptr, 64, 64, 3};
    if (functional) base["config"]["output_layers"] = {{b.last, 0, 0}};
    const auto head = [&](const std::string& input) {
      return json::array({{{"class_name", "GlobalAveragePooling2D"},
                           {"name", "head_pool"},
                           {"config", {{"name", "head_pool"}}},
                           {"inbound_nodes", {{{input, 0, 0, json::object()}}}}},
                          {{"class_name", "Dense"},
                           {"name", "head"},
                           {"config", {{"name", "head"}, {"units", 10}}},
                           {"inbound_nodes", {{{"head_pool", 0, 0, json::object()}}}}}});
    };
    // Flat: the base's layers and the head in one graph (a Sequential base's gain the head).
    json flat = base;
    for (const json& h : head(b.last)) {
      json layer = h;
      if (!functional) layer.erase("inbound_nodes"), layer.erase("name");
      flat["config"]["layers"].push_back(layer);
    }
    if (functional) flat["config"]["output_layers"] = {{"head", 0, 0}};
    // Nested: the base as one layer of a Functional transfer model, under its own name.
    json nested = base;
    nested["name"] = nested["config"]["name"] = b.zoo;
    nested["inbound_nodes"] = {{{"image", 0, 0, json::object()}}};
    json transfer_layers = json::array({{{"class_name", "InputLayer"},
                                         {"name", "image"},
                                         {"config", {{"name", "image"}, {"batch_input_shape", {nullptr, 64, 64, 3}}}},
                                         {"inbound_nodes", json::array()}},
                                        nested});
    for (const json& h : head(b.zoo)) transfer_layers.push_back(h);
    const json transfer = {{"class_name", "Functional"},
                           {"config",
                            {{"name", "transfer"},
                             {"layers", transfer_layers},
                             {"input_layers", {{"image", 0, 0}}},
                             {"output_layers", {{"head", 0, 0}}}}},
                           {"keras_version", "3.6.0"}};
    std::ofstream(dir.path("flat.json")) << flat.dump();
    std::ofstream(dir.path("transfer.json")) << transfer.dump();
    for (const auto& [spec, file] : {std::pair<const char*, const char*>{"flat.json", "flat.h5"},
                                     std::pair<const char*, const char*>{"transfer.json", "transfer.keras"}}) {
      const auto r = test::run_chorus("init-weights " + dir.path(spec) + " --seed 5 -o " + dir.path(file));
      ASSERT_EQ(r.exit_code, 0) << r.output;
    }
    const std::string x = write_pixels(dir, 64);
    for (const char* name : {"flat.h5", "transfer.keras"}) run_one_process(dir.path(name), x, dir.path(name) + ".npy");
    EXPECT_EQ(relative_error(dir.path("transfer.keras.npy"), dir.path("flat.h5.npy")), 0.0);
    auto info = test::run_chorus("info " + dir.path("transfer.keras"));
    ASSERT_EQ(info.exit_code, 0) << info.output;
    EXPECT_THAT(info.output, testing::HasSubstr(functional ? "conv5_block3_3_conv" : "block5_conv3"));
  }
}
