// Keras 3 .keras archives: the same weights give the same outputs as the .h5 layouts (which the
// other suites check against plain loops and real files), whether the weights member is stored
// or deflated, top-level or in nested models; damaged archives get one clear error naming the
// file and the member.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <fstream>

#include "io/keras/keras_archive.h"
#include "io/keras/keras_writer.h"
#include "io/keras/zip_archive.h"
#include "io/model_file.h"
#include "layers/padding.h"
#include "layers/resizing.h"
#include "reference/reference_ops.h"
#include "reference/test_util.h"

using namespace chorus;
using nlohmann::json;
using testing::HasSubstr;

namespace {

// Conv, batch norm (folded at load), pooling, a residual Add and a nested Sequential base, as a
// transfer-learning model has them; Keras 3 config keys.
const char* kTransfer = R"({"module": "keras", "class_name": "Functional", "config": {"name": "transfer", "layers": [
 {"class_name": "InputLayer", "name": "img", "config": {"name": "img", "batch_shape": [null, 12, 12, 3]}, "inbound_nodes": []},
 {"class_name": "Sequential", "name": "base", "config": {"name": "base", "layers": [
   {"class_name": "InputLayer", "config": {"name": "base_in", "batch_shape": [null, 12, 12, 3]}},
   {"class_name": "Conv2D", "config": {"name": "conv", "filters": 8, "kernel_size": [3, 3], "padding": "same", "use_bias": false}},
   {"class_name": "BatchNormalization", "config": {"name": "bn", "axis": -1}},
   {"class_name": "ReLU", "config": {"name": "relu"}},
   {"class_name": "DepthwiseConv2D", "config": {"name": "dw", "kernel_size": [3, 3], "padding": "same"}},
   {"class_name": "Conv2D", "config": {"name": "project", "filters": 8, "kernel_size": [1, 1]}}]},
  "inbound_nodes": [{"args": [{"class_name": "__keras_tensor__", "config": {"keras_history": ["img", 0, 0]}}], "kwargs": {}}]},
 {"class_name": "Conv2D", "name": "side", "config": {"name": "side", "filters": 8, "kernel_size": [1, 1]},
  "inbound_nodes": [{"args": [{"class_name": "__keras_tensor__", "config": {"keras_history": ["img", 0, 0]}}], "kwargs": {}}]},
 {"class_name": "Add", "name": "add", "config": {"name": "add"},
  "inbound_nodes": [{"args": [[{"class_name": "__keras_tensor__", "config": {"keras_history": ["base", 0, 0]}},
                               {"class_name": "__keras_tensor__", "config": {"keras_history": ["side", 0, 0]}}]], "kwargs": {}}]},
 {"class_name": "GlobalAveragePooling2D", "name": "gap", "config": {"name": "gap"},
  "inbound_nodes": [{"args": [{"class_name": "__keras_tensor__", "config": {"keras_history": ["add", 0, 0]}}], "kwargs": {}}]},
 {"class_name": "Dense", "name": "head", "config": {"name": "head", "units": 5, "activation": "softmax"},
  "inbound_nodes": [{"args": [{"class_name": "__keras_tensor__", "config": {"keras_history": ["gap", 0, 0]}}], "kwargs": {}}]}],
 "input_layers": [["img", 0, 0]], "output_layers": [["head", 0, 0]]}})";

using Written = test::KerasTestModel;

Written prepare(const std::string& config_text, std::uint64_t seed = 7) {
  return test::random_keras_model(config_text, seed);
}

Tensor run(const std::string& path, const Tensor& in) { return io::load_model_file(path).forward(in); }

std::string error_loading(const std::string& path) {
  return test::error_of([&] { io::load_model_file(path); });
}

bool python_has(const std::string& modules) {
  return test::run_command("/usr/bin/python3 -c 'import " + modules + "'").exit_code == 0;
}

// Runs a file generator of tests/data (one written without Chorus) into `dir`. The tests then
// run its files under mpiexec too, which CI does as root.
test::CommandResult generate(const std::string& script, const test::TempDir& dir) {
  setenv("OMPI_ALLOW_RUN_AS_ROOT", "1", 1);
  setenv("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1", 1);
  return test::run_command("/usr/bin/python3 " + test::source_path("tests/data/" + script) + " " + dir.path(""));
}

}  // namespace

TEST(KerasArchive, StoredAndDeflatedWeightsEqualTheH5) {
  test::TempDir dir;
  Written w = prepare(kTransfer);
  io::write_keras_h5(dir.path("m.h5"), w.config, w.spec, w.model, w.weights);
  io::write_keras_archive(dir.path("stored.keras"), w.config, w.spec, w.model, w.weights, false);
  io::write_keras_archive(dir.path("deflated.keras"), w.config, w.spec, w.model, w.weights, true);
  Tensor in = test::random_tensor(3, {12, 12, 3}, 4);
  const Tensor expected = run(dir.path("m.h5"), in);
  EXPECT_EQ(max_relative_error(run(dir.path("stored.keras"), in), expected), 0.0);
  EXPECT_EQ(max_relative_error(run(dir.path("deflated.keras"), in), expected), 0.0);

  // As Keras 3 lays them out: the nested base's layers under layers/base/layers/.
  io::ZipArchive zip(dir.path("stored.keras"));
  for (const char* member : {"metadata.json", "config.json", "model.weights.h5"}) EXPECT_NE(zip.find(member), nullptr);
  EXPECT_EQ(zip.find("model.weights.h5")->method, 0);
  EXPECT_EQ(io::ZipArchive(dir.path("deflated.keras")).find("model.weights.h5")->method, 8);
  io::ModelStructure s = io::load_model_structure(dir.path("stored.keras"), "", true);
  EXPECT_EQ(s.format, io::ModelFormat::keras_archive);
  io::KerasArchiveWeightReader stored(dir.path("stored.keras"), *s.keras);
  EXPECT_TRUE(stored.weights_in_place());
  io::KerasArchiveWeightReader deflated(dir.path("deflated.keras"), *s.keras);
  EXPECT_FALSE(deflated.weights_in_place());
}

TEST(KerasArchive, ChorusRunsAnArchiveAsItRunsTheH5) {
  test::TempDir dir;
  const std::string spec = test::source_path("models/lenet5.json");
  ASSERT_EQ(test::run_chorus("init-weights " + spec + " --seed 4 -o " + dir.path("l.keras")).exit_code, 0);
  ASSERT_EQ(test::run_chorus("init-weights " + spec + " --seed 4 -o " + dir.path("l.h5")).exit_code, 0);
  for (const char* name : {"l.keras", "l.h5"}) {
    auto r = test::run_chorus(std::string("run ") + dir.path(name) + " --synthetic 3 --quiet --output " +
                              dir.path(std::string(name) + ".npy"));
    ASSERT_EQ(r.exit_code, 0) << r.output;
  }
  std::ifstream a(dir.path("l.keras.npy"), std::ios::binary), b(dir.path("l.h5.npy"), std::ios::binary);
  EXPECT_EQ(std::string(std::istreambuf_iterator<char>(a), {}), std::string(std::istreambuf_iterator<char>(b), {}));
  auto info = test::run_chorus("info " + dir.path("l.keras"));
  EXPECT_EQ(info.exit_code, 0) << info.output;
  EXPECT_THAT(info.output, HasSubstr("conv1"));
  // plan, bench and profile take it too: the same plan as from the .h5, and a layer table.
  for (const char* name : {"l.keras", "l.h5"}) {
    auto r = test::run_chorus(std::string("plan ") + dir.path(name) + " --strategy pipeline --ranks 2 -o " +
                              dir.path(std::string(name) + ".plan.json"));
    ASSERT_EQ(r.exit_code, 0) << r.output;
  }
  std::ifstream pa(dir.path("l.keras.plan.json")), pb(dir.path("l.h5.plan.json"));
  const json plan_a = json::parse(pa), plan_b = json::parse(pb);
  EXPECT_EQ(plan_a["model"], dir.path("l.keras"));
  EXPECT_EQ(plan_a["stages"], plan_b["stages"]);
  auto bench = test::run_chorus("bench " + dir.path("l.keras") + " --frames 2 --warmup 1 --layers");
  EXPECT_EQ(bench.exit_code, 0) << bench.output;
  EXPECT_THAT(bench.output, HasSubstr("conv1"));
  auto profile = test::run_chorus("profile " + dir.path("l.keras") + " --frames 2 -o " + dir.path("profile.json"));
  EXPECT_EQ(profile.exit_code, 0) << profile.output;
  std::ifstream written(dir.path("profile.json"));
  EXPECT_THAT(std::string(std::istreambuf_iterator<char>(written), {}), HasSubstr("conv1"));
}

TEST(KerasArchiveErrors, NotAZipArchive) {
  test::TempDir dir;
  std::ofstream(dir.path("text.keras")) << "this is not a zip archive, only text that is long enough to search\n";
  EXPECT_THAT(error_loading(dir.path("text.keras")), HasSubstr("text.keras: not a zip archive"));
}

TEST(KerasArchiveErrors, TruncatedArchive) {
  test::TempDir dir;
  Written w = prepare(kTransfer);
  io::write_keras_archive(dir.path("whole.keras"), w.config, w.spec, w.model, w.weights);
  std::ifstream in(dir.path("whole.keras"), std::ios::binary);
  std::string bytes(std::istreambuf_iterator<char>(in), {});
  std::ofstream(dir.path("half.keras"), std::ios::binary) << bytes.substr(0, bytes.size() / 2);
  const std::string error = error_loading(dir.path("half.keras"));
  EXPECT_THAT(error, HasSubstr("half.keras: not a zip archive (no end-of-central-directory record; truncated"));
}

TEST(KerasArchiveErrors, MissingMemberIsNamed) {
  test::TempDir dir;
  io::ZipWriter zip(dir.path("nocfg.keras"));
  const std::string meta = R"({"keras_version": "3.3.3"})";
  zip.add("metadata.json", std::vector<char>(meta.begin(), meta.end()), true);
  zip.finish();
  const std::string error = error_loading(dir.path("nocfg.keras"));
  EXPECT_THAT(error, HasSubstr("nocfg.keras: the archive has no member 'config.json' (it holds: metadata.json)"));
}

TEST(KerasArchiveErrors, MissingWeightsMemberIsNamed) {
  test::TempDir dir;
  Written w = prepare(kTransfer);
  io::write_keras_archive(dir.path("m.keras"), w.config, w.spec, w.model, w.weights);
  io::ZipArchive original(dir.path("m.keras"));
  io::ZipWriter zip(dir.path("noweights.keras"));
  zip.add("metadata.json", original.read("metadata.json"), true);
  zip.add("config.json", original.read("config.json"), true);
  zip.finish();
  const std::string error = error_loading(dir.path("noweights.keras"));
  EXPECT_THAT(error, HasSubstr("noweights.keras: the archive has no member 'model.weights.h5' (it holds: "));
}

TEST(KerasArchiveErrors, ConfigThatDoesNotMatchTheWeights) {
  test::TempDir dir;
  Written w = prepare(kTransfer);
  io::write_keras_archive(dir.path("m.keras"), w.config, w.spec, w.model, w.weights);
  // The same weights under a config whose side convolution has 6 filters, not 8.
  std::string changed = kTransfer;
  for (const std::string name : {"side", "project"}) {
    const std::string from = R"("name": ")" + name + R"(", "filters": 8)";
    changed.replace(changed.find(from), from.size(), R"("name": ")" + name + R"(", "filters": 6)");
  }
  io::ZipArchive original(dir.path("m.keras"));
  io::ZipWriter zip(dir.path("mismatch.keras"));
  zip.add("metadata.json", original.read("metadata.json"), true);
  zip.add("config.json", std::vector<char>(changed.begin(), changed.end()), true);
  zip.add("model.weights.h5", original.read("model.weights.h5"), false);
  zip.finish();
  const std::string error = error_loading(dir.path("mismatch.keras"));
  EXPECT_THAT(error, HasSubstr("mismatch.keras:model.weights.h5: layer '"));
  EXPECT_THAT(error, HasSubstr("config.json does not match the weights"));
}

TEST(KerasArchiveErrors, DamagedDeflatedMember) {
  test::TempDir dir;
  Written w = prepare(kTransfer);
  io::write_keras_archive(dir.path("m.keras"), w.config, w.spec, w.model, w.weights, true);
  std::fstream f(dir.path("m.keras"), std::ios::in | std::ios::out | std::ios::binary);
  std::string bytes(std::istreambuf_iterator<char>(f), {});
  // Flip bytes in the middle of the deflated weights member.
  const auto at = bytes.find("model.weights.h5") + 200;
  for (int i = 0; i < 16; ++i) bytes[at + i] = static_cast<char>(~bytes[at + i]);
  f.seekp(0);
  f.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  f.close();
  EXPECT_THAT(error_loading(dir.path("m.keras")), HasSubstr("m.keras: member 'model.weights.h5'"));
}

// A stored weights member (as Keras and init-weights write it) is read in place, and still
// checked against its CRC: one flipped bit in a weight would otherwise load silently.
TEST(KerasArchiveErrors, DamagedStoredMember) {
  test::TempDir dir;
  Written w = prepare(kTransfer);
  io::write_keras_archive(dir.path("m.keras"), w.config, w.spec, w.model, w.weights, false);
  std::fstream f(dir.path("m.keras"), std::ios::in | std::ios::out | std::ios::binary);
  std::string bytes(std::istreambuf_iterator<char>(f), {});
  const auto member = bytes.find("model.weights.h5");
  const auto at = member + (bytes.rfind("model.weights.h5") - member) / 2;  // within its data
  bytes[at] = static_cast<char>(bytes[at] ^ 0x01);
  f.seekp(0);
  f.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  f.close();
  EXPECT_THAT(error_loading(dir.path("m.keras")), HasSubstr("m.keras: member 'model.weights.h5' fails its CRC check"));
}

// Archives packed by another zip implementation (Python's zipfile, as Keras itself uses):
// stored and deflated weights read the same, and Python reads the archives Chorus writes.
TEST(KerasArchive, ZipFilesOfPythonsZipfile) {
  if (test::run_command("/usr/bin/python3 -c 'import zipfile'").exit_code != 0) GTEST_SKIP() << "no python3 here";
  test::TempDir dir;
  Written w = prepare(kTransfer);
  io::write_keras_archive(dir.path("chorus.keras"), w.config, w.spec, w.model, w.weights, true);
  Tensor in = test::random_tensor(2, {12, 12, 3}, 8);
  const Tensor expected = run(dir.path("chorus.keras"), in);
  for (const char* method : {"ZIP_STORED", "ZIP_DEFLATED"}) {
    const std::string out = dir.path(std::string(method) + ".keras");
    auto r = test::run_command(
        "/usr/bin/python3 -c \"import zipfile, sys\n"
        "src = zipfile.ZipFile(sys.argv[1])\n"
        "with zipfile.ZipFile(sys.argv[2], 'w', zipfile." +
        std::string(method) +
        ") as z:\n"
        "    for i in src.infolist(): z.writestr(i.filename, src.read(i.filename))\" " +
        dir.path("chorus.keras") + " " + out);
    ASSERT_EQ(r.exit_code, 0) << r.output;
    EXPECT_EQ(max_relative_error(run(out, in), expected), 0.0) << method;
  }
}

// The preprocessing layers Keras 3 models carry in front: augmentation (the identity at
// inference), Rescaling and Normalization with constants in the config or adapted statistics in
// the weights, checked against plain loops, from .keras and .h5 alike.
TEST(KerasArchive, PreprocessingLayersInFront) {
  const char* config = R"({"module": "keras", "class_name": "Sequential", "config": {"name": "pre", "layers": [
   {"module": "keras.layers", "class_name": "InputLayer", "config": {"name": "in", "batch_shape": [null, 5, 6, 3]}},
   {"module": "keras.layers", "class_name": "RandomFlip", "config": {"name": "flip", "mode": "horizontal", "seed": null}},
   {"module": "keras.layers", "class_name": "RandomRotation", "config": {"name": "rot", "factor": 0.1}},
   {"module": "keras.layers", "class_name": "RandomZoom", "config": {"name": "zoom", "height_factor": 0.1}},
   {"module": "keras.layers", "class_name": "RandomContrast", "config": {"name": "contrast", "factor": 0.2}},
   {"module": "keras.layers", "class_name": "Rescaling", "config": {"name": "rescale", "scale": 0.00784313725, "offset": -1.0}},
   {"module": "keras.layers", "class_name": "Normalization", "config": {"name": "norm", "axis": -1, "mean": [0.1, -0.2, 0.3], "variance": [4.0, 0.25, 1.0], "invert": false}},
   {"module": "keras.layers", "class_name": "Normalization", "config": {"name": "adapted", "axis": -1, "mean": null, "variance": null}},
   {"module": "keras.layers", "class_name": "Rescaling", "config": {"name": "per_channel", "scale": [[[0.5, 2.0, 1.0]]], "offset": 0.0}},
   {"module": "keras.layers", "class_name": "Normalization", "config": {"name": "back", "axis": -1, "mean": [1.0, 2.0, -3.0], "variance": [0.25, 1.0, 16.0], "invert": true}},
   {"module": "keras.layers", "class_name": "Normalization", "config": {"name": "adapted_back", "axis": -1, "mean": null, "variance": null, "invert": true}}]}})";
  test::TempDir dir;
  Written w = prepare(config);
  w.weights[9]["mean"] = {-1.0f, 0.5f, 0.25f};
  w.weights[9]["variance"] = {4.0f, 1.0f, 0.0f};  // a deviation of 0 is floored at 1e-7, as Keras does
  w.weights[9]["count"] = {10.0f};
  // The adapted statistics: mean, variance, count (Keras' order).
  w.weights[6]["mean"] = {0.5f, 0.0f, -0.5f};
  w.weights[6]["variance"] = {1.0f, 9.0f, 0.25f};
  w.weights[6]["count"] = {100.0f};
  io::write_keras_archive(dir.path("pre.keras"), w.config, w.spec, w.model, w.weights);
  io::write_keras_h5(dir.path("pre.h5"), w.config, w.spec, w.model, w.weights);
  Tensor in = test::random_tensor(2, {5, 6, 3}, 3, 0.0f, 255.0f);
  Tensor expected(2, {5, 6, 3});
  const float mean[3] = {0.1f, -0.2f, 0.3f}, var[3] = {4.0f, 0.25f, 1.0f};
  const float amean[3] = {0.5f, 0.0f, -0.5f}, adev[3] = {1.0f, 3.0f, 0.5f}, scale[3] = {0.5f, 2.0f, 1.0f};
  const float bmean[3] = {1.0f, 2.0f, -3.0f}, bdev[3] = {0.5f, 1.0f, 4.0f};
  const float cmean[3] = {-1.0f, 0.5f, 0.25f}, cdev[3] = {2.0f, 1.0f, 1e-7f};
  for (std::size_t i = 0; i < in.size(); ++i) {
    const int c = static_cast<int>(i % 3);
    double x = in.data()[i] * 0.00784313725 - 1.0;
    x = (x - mean[c]) / std::sqrt(var[c]);
    x = (x - amean[c]) / adev[c];
    x *= scale[c];
    x = bmean[c] + x * bdev[c];    // Normalization(invert=True): back from normalised values
    x = cmean[c] + x * cdev[c];
    expected.data()[i] = static_cast<float>(x);
  }
  EXPECT_LT(test::error_vs_largest(run(dir.path("pre.keras"), in), expected), 1e-6);
  EXPECT_LT(test::error_vs_largest(run(dir.path("pre.h5"), in), expected), 1e-6);
}

// CenterCrop and Resizing on fixed sizes from a Keras 3 config (the layers are checked against
// PyTorch in test_layers); options Chorus does not implement are refused by name.
TEST(KerasArchive, CenterCropAndResizing) {
  const std::string config = R"({"module": "keras", "class_name": "Sequential", "config": {"name": "cr", "layers": [
   {"class_name": "InputLayer", "config": {"name": "in", "batch_shape": [null, 10, 12, 3]}},
   {"class_name": "CenterCrop", "config": {"name": "crop", "height": 8, "width": 8}},
   {"class_name": "Resizing", "config": {"name": "resize", "height": 4, "width": 6, "interpolation": "bilinear", "crop_to_aspect_ratio": false}}]}})";
  test::TempDir dir;
  Written w = prepare(config);
  io::write_keras_archive(dir.path("cr.keras"), w.config, w.spec, w.model, w.weights);
  Tensor in = test::random_tensor(1, {10, 12, 3}, 2);
  layers::CenterCrop crop("c", 8, 8);
  layers::Resizing resize("r", 4, 6, layers::Resizing::Interpolation::bilinear);
  crop.build({in.shape()});
  resize.build({crop.output_shape()});
  Tensor cropped, expected;
  crop.forward({&in}, cropped);
  resize.forward({&cropped}, expected);
  EXPECT_EQ(max_relative_error(run(dir.path("cr.keras"), in), expected), 0.0);

  // The aspect-ratio options reach the layer (its arithmetic is checked against PyTorch in
  // test_misc_layers); both at once, or a fill mode other than constant, are refused by name.
  const auto replaced = [](std::string text, const std::string& from, const std::string& to) {
    return text.replace(text.find(from), from.size(), to);
  };
  const std::string aspect =
      replaced(config, "\"crop_to_aspect_ratio\": false", "\"pad_to_aspect_ratio\": true, \"fill_value\": 0.5");
  Written padded = prepare(aspect);
  EXPECT_THAT(padded.model.node(padded.model.find("resize")).layer->describe(),
              HasSubstr("padded to the aspect ratio with 0.5"));
  EXPECT_THAT(test::error_of([&] { prepare(replaced(aspect, "\"fill_value\": 0.5", "\"crop_to_aspect_ratio\": true")); }),
              HasSubstr("crop_to_aspect_ratio and pad_to_aspect_ratio are both true"));
  EXPECT_THAT(test::error_of([&] { prepare(replaced(aspect, "\"fill_value\": 0.5", "\"fill_mode\": \"reflect\"")); }),
              HasSubstr("fill_mode 'reflect' is not supported"));
}

// Keras 3 writes keras.ops calls on a tensor and a constant into a Functional config as
// operation nodes (keras.applications' preprocess_input: x / 127.5 - 1); their constants ride in
// the node's args. Checked against plain loops.
TEST(KerasArchive, OperationsWithConstants) {
  const auto op = [](const char* cls, const char* name, const char* from, const std::string& a, const std::string& b) {
    return std::string(R"({"module": "keras.src.ops.numpy", "class_name": ")") + cls + R"(", "config": {"name": ")" +
           name + R"("}, "name": ")" + name + R"(", "inbound_nodes": [{"args": [)" +
           (a.empty() ? R"({"class_name": "__keras_tensor__", "config": {"keras_history": [")" + std::string(from) +
                            R"(", 0, 0]}})"
                      : a) +
           ", " +
           (b.empty() ? R"({"class_name": "__keras_tensor__", "config": {"keras_history": [")" + std::string(from) +
                            R"(", 0, 0]}})"
                      : b) +
           R"(], "kwargs": {}}]})";
  };
  const std::string config =
      R"({"module": "keras", "class_name": "Functional", "config": {"name": "ops", "layers": [
   {"class_name": "InputLayer", "name": "in", "config": {"name": "in", "batch_shape": [null, 3, 4, 3]}, "inbound_nodes": []},
   )" +
      op("TrueDivide", "div", "in", "", "127.5") + ",\n" + op("Subtract", "sub", "div", "", "1.0") + ",\n" +
      op("Multiply", "mul", "sub", "",
         R"({"class_name": "__numpy__", "config": {"value": [1.0, 2.0, 3.0], "dtype": "float32"}})") +
      ",\n" + op("Subtract", "rsub", "mul", "2.0", "") + ",\n" + op("Add", "add", "rsub", "", "[0.5, 0.25, 0.0]") +
      R"(],
   "input_layers": [["in", 0, 0]], "output_layers": [["add", 0, 0]]}})";
  test::TempDir dir;
  Written w = prepare(config);
  io::write_keras_archive(dir.path("ops.keras"), w.config, w.spec, w.model, w.weights);
  Tensor in = test::random_tensor(2, {3, 4, 3}, 6, 0.0f, 255.0f);
  Tensor expected(2, {3, 4, 3});
  const float mul[3] = {1, 2, 3}, add[3] = {0.5f, 0.25f, 0.0f};
  for (std::size_t i = 0; i < in.size(); ++i) {
    const int c = static_cast<int>(i % 3);
    expected.data()[i] = static_cast<float>(2.0 - (in.data()[i] / 127.5 - 1.0) * mul[c] + add[c]);
  }
  EXPECT_LT(test::error_vs_largest(run(dir.path("ops.keras"), in), expected), 1e-6);

  // c / x, with the constant first (per channel here), then the same chain.
  std::string reversed = config;
  const std::string from = op("TrueDivide", "div", "in", "", "127.5"),
                    to = op("TrueDivide", "div", "in", "[127.5, -2.0, 0.5]", "");
  reversed.replace(reversed.find(from), from.size(), to);
  Written r = prepare(reversed);
  io::write_keras_archive(dir.path("rdiv.keras"), r.config, r.spec, r.model, r.weights);
  Tensor positive = test::random_tensor(2, {3, 4, 3}, 7, 1.0f, 255.0f);
  const float numerator[3] = {127.5f, -2.0f, 0.5f};
  for (std::size_t i = 0; i < positive.size(); ++i) {
    const int c = static_cast<int>(i % 3);
    expected.data()[i] =
        static_cast<float>(2.0 - (numerator[c] / positive.data()[i] - 1.0) * mul[c] + add[c]);
  }
  EXPECT_LT(test::error_vs_largest(run(dir.path("rdiv.keras"), positive), expected), 1e-6);
  // An operation Chorus does not have with a constant is still refused by name.
  std::string power = config;
  power.replace(power.find(from), from.size(), op("Power", "div", "in", "", "2.0"));
  EXPECT_THAT(test::error_of([&] { prepare(power); }), HasSubstr("layer 'div'"));
}

// Merge layers and Keras 3 operations on two computed tensors: Subtract, Maximum, Minimum,
// Average, and TrueDivide written as an operation node (keras.ops.true_divide(a, b)), against
// plain loops.
TEST(KerasArchive, OperationsOnTwoTensors) {
  const auto tensor = [](const char* from) {
    return std::string(R"({"class_name": "__keras_tensor__", "config": {"keras_history": [")") + from + R"(", 0, 0]}})";
  };
  const auto merge = [&](const char* cls, const char* name, std::vector<const char*> from) {
    std::string args;
    for (const char* f : from) args += (args.empty() ? "" : ", ") + tensor(f);
    return std::string(R"({"class_name": ")") + cls + R"(", "name": ")" + name + R"(", "config": {"name": ")" + name +
           R"("}, "inbound_nodes": [{"args": [[)" + args + R"(]], "kwargs": {}}]})";
  };
  const std::string config =
      R"({"module": "keras", "class_name": "Functional", "config": {"name": "two", "layers": [
   {"class_name": "InputLayer", "name": "in", "config": {"name": "in", "batch_shape": [null, 5, 4, 3]}, "inbound_nodes": []},
   {"class_name": "Conv2D", "name": "a", "config": {"name": "a", "filters": 3, "kernel_size": [3, 3], "padding": "same"},
    "inbound_nodes": [{"args": [)" + tensor("in") + R"(], "kwargs": {}}]},
   {"class_name": "Conv2D", "name": "b", "config": {"name": "b", "filters": 3, "kernel_size": [1, 1], "activation": "sigmoid"},
    "inbound_nodes": [{"args": [)" + tensor("in") + R"(], "kwargs": {}}]},
   )" + merge("Subtract", "sub", {"a", "b"}) + ",\n" + merge("Maximum", "max", {"a", "b", "sub"}) + ",\n" +
      merge("Minimum", "min", {"sub", "a"}) + ",\n" + merge("Average", "avg", {"max", "min", "b"}) + ",\n" +
      R"({"module": "keras.src.ops.numpy", "class_name": "TrueDivide", "name": "div", "config": {"name": "div"},
    "inbound_nodes": [{"args": [)" + tensor("avg") + ", " + tensor("b") + R"(], "kwargs": {}}]}],
   "input_layers": [["in", 0, 0]], "output_layers": [["div", 0, 0]]}})";
  test::TempDir dir;
  Written w = prepare(config);
  io::write_keras_archive(dir.path("two.keras"), w.config, w.spec, w.model, w.weights);
  const Tensor in = test::random_tensor(2, {5, 4, 3}, 8);
  ref::ConvParams p3, p1;
  p3.kh = p3.kw = 3;
  p3.same = true;
  const Tensor a = ref::conv2d(in, w.weights[0].at("kernel"), w.weights[0].at("bias"), 3, p3);
  const Tensor b = ref::activation(ref::conv2d(in, w.weights[1].at("kernel"), w.weights[1].at("bias"), 3, p1), "sigmoid");
  Tensor expected(2, a.shape());
  for (std::size_t i = 0; i < a.size(); ++i) {
    const double x = a.data()[i], y = b.data()[i], sub = x - y;
    const double avg = (std::max({x, y, sub}) + std::min(sub, x) + y) / 3;
    expected.data()[i] = static_cast<float>(avg / y);
  }
  EXPECT_LT(test::error_vs_largest(run(dir.path("two.keras"), in), expected), 1e-5);
}

// Found by fuzzing: a weights member whose dataset claims numbers of 4 GB each made HDF5
// allocate 4 GB to read it; it is refused first, naming the dataset. (The file was rebuilt with
// Keras' class-named groups and the fuzzer's 4 GB size patched into the same dataset's type.)
TEST(KerasArchiveErrors, HugeNumberTypeIsRefusedBeforeReading) {
  const std::string path = test::source_path("tests/fuzz/regressions/keras_archive/hdf5-type-of-4-gigabytes.keras");
  EXPECT_THAT(error_loading(path), HasSubstr("model.weights.h5:/layers/dense/vars/1: numbers of 4294967292 bytes"));
}

// Found by fuzzing: a deflated member of 56 bytes claiming 4 GB once allocated its claim
// before inflating; deflate cannot expand a byte to more than 1032, so it is refused first.
TEST(KerasArchiveErrors, MemberClaimingMoreThanDeflateCanProduceIsRefused) {
  const std::string path =
      test::source_path("tests/fuzz/regressions/keras_archive/deflated-member-claims-4gb.keras");
  EXPECT_THAT(error_loading(path),
              HasSubstr("member 'metadata.json' claims 4261412924 bytes from 56 deflated, more than deflate can produce"));
}

// Files that neither Chorus nor Keras wrote: tests/data/keras_saved_layout.py writes one model
// as Keras 3's model.save() and save_weights() and tf.keras 2.13's model.save() lay it out
// (groups named by class and numbered per class, not by the layers' names; tf.keras numbering
// each weighted layer twice), with outputs from numpy loops. Its layers are named so that a
// reader going by names, or by sorted names, takes weights of the right shape from the wrong
// layer. Each also runs split by output channels across 3 MPI ranks.
TEST(KerasArchive, KerasOwnLayoutsFromAnIndependentWriter) {
  if (!python_has("h5py, numpy")) GTEST_SKIP() << "python3-h5py or python3-numpy is not installed";
  test::TempDir dir;
  auto made = generate("keras_saved_layout.py", dir);
  ASSERT_EQ(made.exit_code, 0) << made.output;
  const auto expect_outputs = [&](const std::string& file) {
    EXPECT_LT(test::npy_error_vs_largest(file, dir.path("expected.npy")), 1e-5);
  };
  const std::string input = " --input " + dir.path("x.npy") + " --quiet --output ";
  for (const std::string& model :
       std::vector<std::string>{"keras3.keras", "tf213.keras", "keras3.weights.h5 --arch " + dir.path("config.json")}) {
    SCOPED_TRACE(model);
    const std::string out = dir.path("out.npy");
    std::remove(out.c_str());
    auto r = test::run_chorus("run " + dir.path(model) + input + out);
    ASSERT_EQ(r.exit_code, 0) << r.output;
    expect_outputs(out);
    std::remove(out.c_str());
    r = test::run_command("timeout -k 5 120 mpiexec --oversubscribe -np 3 " + std::string(CHORUS_BINARY) + " run " +
                          dir.path(model) + " --strategy split-output" + input + out);
    ASSERT_EQ(r.exit_code, 0) << r.output;
    expect_outputs(out);
  }
  // Without its architecture, a Keras 3 weights file says what to pass.
  EXPECT_THAT(test::run_chorus("info " + dir.path("keras3.weights.h5")).output,
              HasSubstr("a Keras 3 weights file (model.save_weights()), which holds no architecture; pass it with "
                        "--arch FILE"));
  // A config with one Dense layer more than the weights hold names the layer and the groups.
  json config = json::parse(std::ifstream(dir.path("config.json")));
  json extra = config["config"]["layers"].back();
  extra["name"] = extra["config"]["name"] = "extra";
  extra["inbound_nodes"][0]["args"][0]["config"]["keras_history"][0] = "predictions";
  config["config"]["layers"].push_back(extra);
  config["config"]["output_layers"] = json::array({json::array({"extra", 0, 0})});
  std::ofstream(dir.path("more.json")) << config.dump();
  EXPECT_THAT(test::run_chorus("run " + dir.path("keras3.weights.h5") + " --arch " + dir.path("more.json") +
                               " --synthetic 1 --quiet")
                  .output,
              HasSubstr("keras3.weights.h5: layer 'extra' is number 4 of its model's dense layers, but '/layers' "
                        "holds 3 group(s) named dense[_N] (the --arch config does not match the weights)"));
}

// Keras' snake case of class names, as its saved weight paths spell them (checked with
// keras.utils' regular expressions in Python).
TEST(KerasArchive, ClassNamesAsKerasSavesThem) {
  const std::vector<std::pair<std::string, std::string>> names{{"Conv2D", "conv2d"},
                                                               {"BatchNormalization", "batch_normalization"},
                                                               {"DepthwiseConv2D", "depthwise_conv2d"},
                                                               {"ReLU", "re_lu"},
                                                               {"PReLU", "p_re_lu"},
                                                               {"MultiHeadAttention", "multi_head_attention"},
                                                               {"Conv2DTranspose", "conv2d_transpose"},
                                                               {"GlobalAveragePooling2D", "global_average_pooling2d"},
                                                               {"SeparableConv2D", "separable_conv2d"},
                                                               {"LSTM", "lstm"},
                                                               {"Conv3D", "conv3d"}};
  for (const auto& [cls, key] : names) EXPECT_EQ(io::keras_snake_case(cls), key) << cls;
}

// The layers Keras 3 models carry, in a .keras file that neither Chorus nor Keras wrote
// (tests/data/keras3_front_layers.py: two inputs, augmentation, Resizing, CenterCrop,
// preprocess_input's operation nodes, Rescaling, an adapted Normalization, a nested Functional
// base with a depthwise convolution and batch norm, a shared Dense, two outputs), against
// PyTorch's outputs, in one process and on 3 MPI ranks.
TEST(KerasArchive, Keras3FrontLayersMatchPyTorch) {
  if (!python_has("h5py, numpy, torch")) GTEST_SKIP() << "python3-h5py, python3-numpy or PyTorch is not installed";
  test::TempDir dir;
  auto made = generate("keras3_front_layers.py", dir);
  ASSERT_EQ(made.exit_code, 0) << made.output;
  const std::string args = " run " + dir.path("front.keras") + " --input image=" + dir.path("front_image.npy") +
                           " --input meta=" + dir.path("front_meta.npy") + " --quiet --output " + dir.path("out.npy");
  const std::string mpi = "timeout -k 5 120 mpiexec --oversubscribe -np 3 ";
  for (const std::string& launch :
       {std::string(CHORUS_BINARY) + args, mpi + CHORUS_BINARY + args + " --strategy pipeline",
        mpi + CHORUS_BINARY + args + " --strategy split-output"}) {
    SCOPED_TRACE(launch);
    for (const char* head : {"class_head", "value_head"})
      std::remove(dir.path(std::string("out.") + head + ".npy").c_str());
    auto r = test::run_command(launch);
    ASSERT_EQ(r.exit_code, 0) << r.output;
    for (const std::string head : {"class_head", "value_head"})
      EXPECT_LT(test::npy_error_vs_largest(dir.path("out." + head + ".npy"), dir.path("front_" + head + ".npy")), 1e-5)
          << head;
  }
}
