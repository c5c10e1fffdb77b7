// Bad input to the Keras importer and the .npy reader: each case must fail with a chorus::Error
// whose text names the file (and layer) and says what is wrong, never crash or allocate wildly.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cstring>
#include <exception>
#include <fstream>
#include <iterator>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "core/error.h"
#include "io/data/npy.h"
#include "io/hdf5/hdf5_file.h"
#include "io/keras/keras_config.h"
#include "io/keras/keras_model.h"
#include "io/keras/keras_writer.h"
#include "reference/test_util.h"

namespace chorus {
namespace {

using nlohmann::json;
using testing::HasSubstr;
using testing::Not;

// conv (same) -> flatten -> dense: small enough to load in milliseconds, with two weighted layers.
const char* const kSmallModel = R"({"class_name":"Sequential","config":{"name":"s","layers":[
  {"class_name":"InputLayer","config":{"batch_input_shape":[null,8,8,3],"name":"in"}},
  {"class_name":"Conv2D","config":{"name":"c1","filters":4,"kernel_size":[3,3],"strides":[1,1],
   "padding":"same","activation":"relu","use_bias":true}},
  {"class_name":"Flatten","config":{"name":"f"}},
  {"class_name":"Dense","config":{"name":"d","units":5,"activation":"softmax"}}]}})";

// The message of the chorus::Error that `f` throws; a marker when it throws nothing.
template <typename F>
std::string error_of(F&& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  } catch (const std::exception& e) {
    // Reported as text so that the failing expectation shows what escaped instead.
    return std::string("(not a chorus::Error: ") + e.what() + ")";
  }
  return "(no chorus::Error thrown)";
}

void write_text(const std::string& path, const std::string& text) {
  std::ofstream out(path, std::ios::binary);
  out << text;
}

std::string read_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

// A full-model .h5 with only a model_config attribute: enough to reach the config checks.
void write_config_h5(const std::string& path, const std::string& model_config) {
  io::H5File file(path, io::H5File::Mode::create);
  file.write_string_attribute("/", "model_config", model_config);
}

// The small model with one Conv2D setting replaced.
std::string small_model_with_conv(const std::string& key, const json& value) {
  json config = json::parse(kSmallModel);
  config["config"]["layers"][1]["config"][key] = value;
  return config.dump();
}

// The small model with the Dense layer's settings replaced.
std::string small_model_with_dense(const std::string& key, const json& value) {
  json config = json::parse(kSmallModel);
  config["config"]["layers"][3]["config"][key] = value;
  return config.dump();
}

std::string load_error(const std::string& path, const std::string& arch_path = "") {
  io::KerasLoadOptions options;
  options.arch_path = arch_path;
  return error_of([&] { io::load_keras_model(path, options); });
}

// ---------------------------------------------------------------------------------------------
// Files that are not (whole) HDF5 files

TEST(KerasErrors, TextFileIsNotHdf5) {
  test::TempDir dir;
  const std::string path = dir.path("notes.h5");
  write_text(path, "this is a text file, not a model\n");
  const std::string msg = load_error(path);
  EXPECT_THAT(msg, HasSubstr(path));
  EXPECT_THAT(msg, HasSubstr("not an HDF5 file"));
}

TEST(KerasErrors, TruncatedFileFailsCleanly) {
  test::TempDir dir;
  const std::string full = dir.path("full.h5");
  const std::string half = dir.path("half.h5");
  test::write_random_model(kSmallModel, full);
  const std::string bytes = read_bytes(full);
  ASSERT_GT(bytes.size(), 1000u);
  write_text(half, bytes.substr(0, bytes.size() / 2));
  // The intact file loads, so the failure below is due to the truncation alone.
  EXPECT_NO_THROW(io::load_keras_model(full));
  const std::string msg = load_error(half);
  EXPECT_THAT(msg, HasSubstr(half));
  EXPECT_THAT(msg, HasSubstr("truncated"));
}

// Found by fuzzing: a corrupt global-heap reference in a string attribute makes the HDF5
// library (Debian's 1.10.8) spin for minutes. A child process reads the structure first and
// is given up on, so the user gets an error instead of a hang.
TEST(KerasErrors, FileThatHangsTheHdf5LibraryIsReportedNotHung) {
  const std::string path = test::source_path("tests/fuzz/regressions/keras_h5/hdf5-spins-on-vlen-heap-reference.h5");
  setenv("CHORUS_HDF5_PROBE_S", "2", 1);
  const std::string msg = load_error(path);
  unsetenv("CHORUS_HDF5_PROBE_S");
  EXPECT_THAT(msg, HasSubstr(path + ": the HDF5 library did not finish reading this file's structure in 2 s; the file "
                                    "is corrupt"));
}

// Found by fuzzing: a corrupt object size in the global heap makes the HDF5 library read or
// copy out of bounds. The child that reads the structure first dies, and the user gets an error.
// (Under AddressSanitizer the child exits with status 1 instead of a signal: also a crash.)
TEST(KerasErrors, FileThatCrashesTheHdf5LibraryIsReportedNotCrashed) {
  const std::string path = test::source_path("tests/fuzz/regressions/keras_h5/hdf5-crashes-on-heap-object-size.h5");
  const std::string msg = load_error(path);
  EXPECT_THAT(msg, HasSubstr(path + ": the HDF5 library crashed reading this file's structure ("));
  EXPECT_THAT(msg, HasSubstr("); the file is corrupt"));
}

TEST(KerasErrors, MissingFileIsNamed) {
  test::TempDir dir;
  const std::string path = dir.path("does_not_exist.h5");
  const std::string msg = load_error(path);
  EXPECT_THAT(msg, HasSubstr(path));
  EXPECT_THAT(msg, HasSubstr("missing"));
}

TEST(KerasErrors, Hdf5WithoutKerasContentIsNotAModel) {
  test::TempDir dir;
  const std::string path = dir.path("empty.h5");
  { io::H5File file(path, io::H5File::Mode::create); }
  const std::string msg = load_error(path);
  EXPECT_THAT(msg, HasSubstr(path));
  EXPECT_THAT(msg, HasSubstr("no model_config"));
  EXPECT_THAT(msg, Not(HasSubstr("weights-only")));
}

TEST(KerasErrors, ModelConfigThatIsNotJson) {
  test::TempDir dir;
  const std::string path = dir.path("badconfig.h5");
  write_config_h5(path, "{\"class_name\": \"Sequential\", \"config\": ");
  const std::string msg = load_error(path);
  EXPECT_THAT(msg, HasSubstr(path));
  EXPECT_THAT(msg, HasSubstr("model_config is not valid JSON"));
}

// ---------------------------------------------------------------------------------------------
// Weights-only files and --arch

class WeightsOnlyFile {
 public:
  explicit WeightsOnlyFile(const test::TempDir& dir)
      : weights_path(dir.path("weights.h5")), full_path(dir.path("full.h5")), arch_path(dir.path("arch.json")) {
    const json config = json::parse(kSmallModel);
    const auto spec = io::parse_keras_config(config, "test config");
    const auto m = io::build_keras_model(spec, "test config");
    const auto weights = io::random_keras_weights(m, spec, 11);
    io::write_keras_h5(weights_path, config, spec, m, weights, io::KerasLayout::weights_only);
    io::write_keras_h5(full_path, config, spec, m, weights, io::KerasLayout::keras2);
    write_text(arch_path, kSmallModel);
  }
  std::string weights_path, full_path, arch_path;
};

TEST(KerasErrors, WeightsOnlyWithoutArchAsksForArch) {
  test::TempDir dir;
  WeightsOnlyFile files(dir);
  const std::string msg = load_error(files.weights_path);
  EXPECT_THAT(msg, HasSubstr(files.weights_path));
  EXPECT_THAT(msg, HasSubstr("weights-only"));
  EXPECT_THAT(msg, HasSubstr("--arch"));
}

TEST(KerasErrors, WeightsOnlyWithArchMatchesFullModel) {
  test::TempDir dir;
  WeightsOnlyFile files(dir);
  io::KerasLoadOptions options;
  options.arch_path = files.arch_path;
  const model::Model from_weights = io::load_keras_model(files.weights_path, options);
  const model::Model from_full = io::load_keras_model(files.full_path);
  const Tensor input = test::random_tensor(3, from_full.input_shape(), 5);
  const Tensor a = from_weights.forward(input);
  const Tensor b = from_full.forward(input);
  ASSERT_EQ(a.shape(), (Shape{1, 1, 5}));
  ASSERT_EQ(a.frames(), 3);
  EXPECT_EQ(max_relative_error(a, b), 0.0);
  // Softmax outputs that are all equal would hide weights that were never read.
  EXPECT_NE(a.data()[0], a.data()[1]);
}

TEST(KerasErrors, MalformedArchJson) {
  test::TempDir dir;
  WeightsOnlyFile files(dir);
  const std::string arch = dir.path("broken.json");
  write_text(arch, R"({"class_name": "Sequential", "config": {"layers": [)");
  const std::string msg = load_error(files.weights_path, arch);
  EXPECT_THAT(msg, HasSubstr(arch));
  EXPECT_THAT(msg, HasSubstr("not valid JSON"));
}

TEST(KerasErrors, MissingArchFile) {
  test::TempDir dir;
  WeightsOnlyFile files(dir);
  const std::string arch = dir.path("nowhere.json");
  const std::string msg = load_error(files.weights_path, arch);
  EXPECT_THAT(msg, HasSubstr(arch));
  EXPECT_THAT(msg, HasSubstr("cannot open"));
}

TEST(KerasErrors, MalformedArchYaml) {
  test::TempDir dir;
  const std::string arch = dir.path("broken.yaml");
  write_text(arch, "class_name: Sequential\nconfig: {layers: [1, 2\n");
  const std::string msg = error_of([&] { io::read_architecture_file(arch); });
  EXPECT_THAT(msg, HasSubstr(arch));
  EXPECT_THAT(msg, HasSubstr("not valid YAML"));
}

// A model file, an archive, a binary file or a JSON array where an architecture is wanted is
// said for what it is, not parsed as YAML ("unknown escape character").
TEST(KerasErrors, ArchFileThatIsSomethingElse) {
  test::TempDir dir;
  const std::pair<std::string, const char*> cases[] = {
      {std::string("\x89HDF\r\n\x1a\n\0\0", 10),
       "is an HDF5 file (a Keras model or its weights), not an architecture file"},
      {std::string("PK\x03\x04\x14\0", 6), "is a zip archive (a Keras 3 .keras model?)"},
      {std::string("\x7f"
                   "ELF\x02\0\0",
                   7),
       "is a binary file, not an architecture file"},
      {"[{\"class_name\": \"Sequential\"}]", "an architecture file is a JSON object ({...}), not an array"}};
  for (const auto& [text, message] : cases) {
    const std::string arch = dir.path("arch.json");
    std::ofstream(arch, std::ios::binary) << text;
    const std::string msg = error_of([&] { io::read_architecture_file(arch); });
    EXPECT_THAT(msg, HasSubstr(arch + ": " + message)) << msg;
  }
}

// The small model as model.to_yaml() writes it, tuples tagged as Python tuples.
const char* const kSmallModelYaml = R"(backend: tensorflow
class_name: Sequential
config:
  layers:
  - class_name: InputLayer
    config:
      batch_input_shape: !!python/tuple [null, 8, 8, 3]
      name: in
  - class_name: Conv2D
    config:
      activation: relu
      filters: 4
      kernel_size: !!python/tuple [3, 3]
      name: c1
      padding: same
      strides: !!python/tuple [1, 1]
      use_bias: true
  - class_name: Flatten
    config: {name: f}
  - class_name: Dense
    config:
      activation: softmax
      name: d
      units: 5
  name: s
keras_version: 2.4.0
)";

TEST(KerasErrors, YamlArchParsesLikeJson) {
  test::TempDir dir;
  const std::string yaml_path = dir.path("arch.yaml");
  write_text(yaml_path, kSmallModelYaml);
  const io::KerasModelSpec from_yaml = io::parse_keras_config(io::read_architecture_file(yaml_path), yaml_path);
  const io::KerasModelSpec from_json = io::parse_keras_config(json::parse(kSmallModel), "json");
  ASSERT_EQ(from_yaml.inputs.size(), 1u);
  EXPECT_EQ(from_yaml.inputs[0].name, from_json.inputs.at(0).name);
  EXPECT_EQ(from_yaml.inputs[0].shape, (std::vector<int>{8, 8, 3}));
  EXPECT_EQ(from_yaml.outputs, from_json.outputs);
  ASSERT_EQ(from_yaml.layers.size(), from_json.layers.size());
  for (std::size_t i = 0; i < from_json.layers.size(); ++i) {
    SCOPED_TRACE(from_json.layers[i].name);
    EXPECT_EQ(from_yaml.layers[i].name, from_json.layers[i].name);
    EXPECT_EQ(from_yaml.layers[i].class_name, from_json.layers[i].class_name);
    EXPECT_EQ(from_yaml.layers[i].inbound, from_json.layers[i].inbound);
    // Same values and same JSON types (4 stays an integer, "same" a string, true a bool).
    EXPECT_EQ(from_yaml.layers[i].config, from_json.layers[i].config);
  }
}

TEST(KerasErrors, YamlArchLoadsWeightsOnlyFile) {
  test::TempDir dir;
  WeightsOnlyFile files(dir);
  const std::string yaml_path = dir.path("arch.yaml");
  write_text(yaml_path, kSmallModelYaml);
  io::KerasLoadOptions options;
  options.arch_path = yaml_path;
  const model::Model from_yaml = io::load_keras_model(files.weights_path, options);
  const model::Model from_full = io::load_keras_model(files.full_path);
  const Tensor input = test::random_tensor(2, from_full.input_shape(), 9);
  EXPECT_EQ(max_relative_error(from_yaml.forward(input), from_full.forward(input)), 0.0);
}

// ---------------------------------------------------------------------------------------------
// Configs Chorus cannot run

TEST(KerasErrors, UnknownLayerTypeIsNamedWithSupportedList) {
  test::TempDir dir;
  const std::string path = dir.path("convlstm.h5");
  json config = json::parse(kSmallModel);
  config["config"]["layers"][1]["class_name"] = "ConvLSTM2D";
  config["config"]["layers"][1]["config"]["name"] = "vol1";
  write_config_h5(path, config.dump());
  const std::string msg = load_error(path);
  EXPECT_THAT(msg, HasSubstr(path));
  EXPECT_THAT(msg, HasSubstr("'vol1'"));
  EXPECT_THAT(msg, HasSubstr("unknown type 'ConvLSTM2D'"));
  EXPECT_THAT(msg, HasSubstr("supported:"));
  EXPECT_THAT(msg, HasSubstr("Conv2D"));
  EXPECT_THAT(msg, HasSubstr("Dense"));
}

TEST(KerasErrors, CausalPaddingNamesTheLayer) {
  test::TempDir dir;
  const std::string path = dir.path("causal.h5");
  write_config_h5(path, small_model_with_conv("padding", "causal"));
  const std::string msg = load_error(path);
  EXPECT_THAT(msg, HasSubstr(path));
  EXPECT_THAT(msg, HasSubstr("'c1'"));
  EXPECT_THAT(msg, HasSubstr("padding 'causal' is not supported"));
}

TEST(KerasErrors, StridesWithDilationNamesTheLayer) {
  test::TempDir dir;
  const std::string path = dir.path("strided_dilated.h5");
  json config = json::parse(small_model_with_conv("strides", {2, 2}));
  config["config"]["layers"][1]["config"]["dilation_rate"] = {2, 2};
  write_config_h5(path, config.dump());
  const std::string msg = load_error(path);
  EXPECT_THAT(msg, HasSubstr("'c1'"));
  EXPECT_THAT(msg, HasSubstr("dilation_rate"));
}

TEST(KerasErrors, SettingOfWrongTypeNamesTheLayer) {
  test::TempDir dir;
  const std::string path = dir.path("units.h5");
  write_config_h5(path, small_model_with_dense("units", "five"));
  const std::string msg = load_error(path);
  EXPECT_THAT(msg, HasSubstr("'d'"));
  EXPECT_THAT(msg, HasSubstr("'units' should be an integer"));
}

TEST(KerasErrors, ZeroStrideNamesTheLayer) {
  test::TempDir dir;
  const std::string path = dir.path("zero_stride.h5");
  write_config_h5(path, small_model_with_conv("strides", {0, 0}));
  const std::string msg = load_error(path);
  EXPECT_THAT(msg, HasSubstr("'c1'"));
  EXPECT_THAT(msg, HasSubstr("strides"));
}

TEST(KerasErrors, MalformedPaddingAmountsNameTheLayer) {
  test::TempDir dir;
  const std::string path = dir.path("zero_padding.h5");
  json config = json::parse(kSmallModel);
  const json pad = {{"class_name", "ZeroPadding2D"},
                    {"config", {{"name", "pad1"}, {"padding", json::array({{1, "one"}, {1, 1}})}}}};
  config["config"]["layers"].insert(config["config"]["layers"].begin() + 1, pad);
  write_config_h5(path, config.dump());
  // A chorus::Error naming the layer, not a JSON library exception about types.
  const std::string msg = load_error(path);
  EXPECT_THAT(msg, HasSubstr(path));
  EXPECT_THAT(msg, HasSubstr("'pad1'"));
  EXPECT_THAT(msg, HasSubstr("padding"));
}

TEST(KerasErrors, VariableInputSizeIsRefused) {
  test::TempDir dir;
  const std::string path = dir.path("any_size.h5");
  json config = json::parse(kSmallModel);
  config["config"]["layers"][0]["config"]["batch_input_shape"] = {nullptr, nullptr, nullptr, 3};
  write_config_h5(path, config.dump());
  const std::string msg = load_error(path);
  EXPECT_THAT(msg, HasSubstr(path));
  EXPECT_THAT(msg, HasSubstr("'in'"));
  EXPECT_THAT(msg, HasSubstr("fixed input sizes"));
}

// Sizes past what an int holds are refused before they wrap round (a 3e9 dimension read as
// negative, a 100000 x 100000 image's Flatten as 1408465472 values).
TEST(KerasErrors, HugeSizesAreRefusedNotWrapped) {
  test::TempDir dir;
  const std::pair<json, const char*> cases[] = {
      {json::array({nullptr, 3000000000LL, 8, 3}), "input dimension 1 is 3000000000; Chorus reads sizes from 1 to"},
      {json::array({nullptr, 100000, 100000, 3}), "holds more than 2147483647 values a frame"},
      {json::array({nullptr, 24000, 24000, 3}), "Conv2D 'c1': output (24000, 24000, 4) holds 2304000000"}};
  for (const auto& [shape, message] : cases) {
    const std::string path = dir.path("huge.h5");
    json config = json::parse(kSmallModel);
    config["config"]["layers"][0]["config"]["batch_input_shape"] = shape;
    write_config_h5(path, config.dump());
    EXPECT_THAT(load_error(path), HasSubstr(message)) << shape.dump();
  }
}

TEST(KerasErrors, OutputThatIsAnInputIsNamed) {
  test::TempDir dir;
  const std::string path = dir.path("output_is_input.h5");
  write_config_h5(path, R"({"class_name":"Functional","config":{"name":"m","layers":[
    {"class_name":"InputLayer","name":"a","config":{"batch_input_shape":[null,4],"name":"a"},"inbound_nodes":[]},
    {"class_name":"Dense","name":"d1","config":{"name":"d1","units":2},"inbound_nodes":[[["a",0,0,{}]]]}],
    "input_layers":[["a",0,0]],"output_layers":[["d1",0,0],["a",0,0]]}})");
  const std::string msg = load_error(path);
  EXPECT_THAT(msg, HasSubstr(path));
  EXPECT_THAT(msg, HasSubstr("output 'a' is a model input"));
}

TEST(KerasErrors, NestedModelCalledOnTheWrongNumberOfInputs) {
  test::TempDir dir;
  const std::string path = dir.path("nested_inputs.h5");
  write_config_h5(path, R"({"class_name":"Functional","config":{"name":"m","layers":[
    {"class_name":"InputLayer","name":"a","config":{"batch_input_shape":[null,4],"name":"a"},"inbound_nodes":[]},
    {"class_name":"Functional","name":"inner","config":{"name":"inner","layers":[
      {"class_name":"InputLayer","name":"x","config":{"batch_input_shape":[null,4],"name":"x"},"inbound_nodes":[]},
      {"class_name":"InputLayer","name":"y","config":{"batch_input_shape":[null,4],"name":"y"},"inbound_nodes":[]},
      {"class_name":"Add","name":"s","config":{"name":"s"},"inbound_nodes":[[["x",0,0,{}],["y",0,0,{}]]]}],
      "input_layers":[["x",0,0],["y",0,0]],"output_layers":[["s",0,0]]},
     "inbound_nodes":[[["a",0,0,{}]]]}],
    "input_layers":[["a",0,0]],"output_layers":[["inner",0,0]]}})");
  const std::string msg = load_error(path);
  EXPECT_THAT(msg, HasSubstr(path));
  EXPECT_THAT(msg, HasSubstr("nested model 'inner' takes 2 input(s), called on 1"));
}

// ---------------------------------------------------------------------------------------------
// Weights that do not fit the architecture

TEST(KerasErrors, WrongWeightShapeSaysFoundAndExpected) {
  test::TempDir dir;
  const std::string h5 = dir.path("model.h5");
  const std::string arch = dir.path("wider.json");
  test::write_random_model(kSmallModel, h5);
  write_text(arch, small_model_with_dense("units", 7));
  const std::string msg = load_error(h5, arch);
  EXPECT_THAT(msg, HasSubstr(h5));
  EXPECT_THAT(msg, HasSubstr("'d'"));
  EXPECT_THAT(msg, HasSubstr("kernel"));
  EXPECT_THAT(msg, HasSubstr("(256, 5)"));
  EXPECT_THAT(msg, HasSubstr("expected (256, 7)"));
}

TEST(KerasErrors, MissingWeightGroupNamesLayer) {
  test::TempDir dir;
  const std::string h5 = dir.path("model.h5");
  const std::string arch = dir.path("longer.json");
  test::write_random_model(kSmallModel, h5);
  json config = json::parse(kSmallModel);
  config["config"]["layers"].push_back({{"class_name", "Dense"}, {"config", {{"name", "extra"}, {"units", 3}}}});
  write_text(arch, config.dump());
  const std::string msg = load_error(h5, arch);
  EXPECT_THAT(msg, HasSubstr(h5));
  EXPECT_THAT(msg, HasSubstr("'extra'"));
  EXPECT_THAT(msg, HasSubstr("no group"));
}

TEST(KerasErrors, MissingWeightInGroupNamesWeight) {
  test::TempDir dir;
  const std::string h5 = dir.path("nobias.h5");
  const std::string arch = dir.path("bias.json");
  // The file's Dense has no bias; the architecture says it has one.
  test::write_random_model(small_model_with_dense("use_bias", false), h5);
  write_text(arch, kSmallModel);
  const std::string msg = load_error(h5, arch);
  EXPECT_THAT(msg, HasSubstr("'d'"));
  EXPECT_THAT(msg, HasSubstr("'bias'"));
  EXPECT_THAT(msg, HasSubstr("missing"));
}

// ---------------------------------------------------------------------------------------------
// .npy files

// Writes a version-1 .npy file with this header dict and payload, padded as NumPy pads it.
void write_npy_raw(const std::string& path, std::string header, const std::string& payload) {
  std::size_t total = 10 + header.size() + 1;
  header.append((64 - total % 64) % 64, ' ');
  header += '\n';
  std::string bytes("\x93NUMPY\x01\x00", 8);
  bytes += static_cast<char>(header.size() & 0xff);
  bytes += static_cast<char>(header.size() >> 8);
  bytes += header;
  bytes += payload;
  write_text(path, bytes);
}

std::string npy_error(const std::string& path, std::size_t max_elements = std::size_t(1) << 32) {
  return error_of([&] { io::read_npy(path, max_elements); });
}

TEST(NpyErrors, WellFormedFileReads) {
  test::TempDir dir;
  const std::string path = dir.path("ok.npy");
  const std::vector<float> values{1, 2, 3, 4, 5, 6};
  write_npy_raw(path, "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }",
                std::string(reinterpret_cast<const char*>(values.data()), values.size() * sizeof(float)));
  const io::NpyArray a = io::read_npy(path);
  EXPECT_EQ(a.shape, (std::vector<std::int64_t>{2, 3}));
  EXPECT_EQ(a.data, values);
}

TEST(NpyErrors, BadMagic) {
  test::TempDir dir;
  const std::string path = dir.path("text.npy");
  write_text(path, "just some text pretending to be an array\n");
  const std::string msg = npy_error(path);
  EXPECT_THAT(msg, HasSubstr(path));
  EXPECT_THAT(msg, HasSubstr("bad magic"));
}

TEST(NpyErrors, MissingFile) {
  test::TempDir dir;
  const std::string path = dir.path("absent.npy");
  const std::string msg = npy_error(path);
  EXPECT_THAT(msg, HasSubstr(path));
  EXPECT_THAT(msg, HasSubstr("cannot open"));
}

TEST(NpyErrors, TruncatedHeader) {
  test::TempDir dir;
  const std::string path = dir.path("short_header.npy");
  std::string bytes("\x93NUMPY\x01\x00\x76\x00{'descr': '<f4'", 25);
  write_text(path, bytes);
  const std::string msg = npy_error(path);
  EXPECT_THAT(msg, HasSubstr(path));
  EXPECT_THAT(msg, HasSubstr("truncated .npy header"));
}

TEST(NpyErrors, TruncatedData) {
  test::TempDir dir;
  const std::string full = dir.path("full.npy");
  const std::string cut = dir.path("cut.npy");
  const std::vector<float> values(12, 0.5f);
  io::write_npy(full, {4, 3}, values.data());
  EXPECT_EQ(io::read_npy(full).data, values);
  const std::string bytes = read_bytes(full);
  write_text(cut, bytes.substr(0, bytes.size() - 8));
  const std::string msg = npy_error(cut);
  EXPECT_THAT(msg, HasSubstr(cut));
  EXPECT_THAT(msg, HasSubstr("truncated data"));
  EXPECT_THAT(msg, HasSubstr("12 values"));
}

TEST(NpyErrors, FortranOrderIsRefused) {
  test::TempDir dir;
  const std::string path = dir.path("fortran.npy");
  write_npy_raw(path, "{'descr': '<f4', 'fortran_order': True, 'shape': (2, 2), }", std::string(16, '\0'));
  const std::string msg = npy_error(path);
  EXPECT_THAT(msg, HasSubstr(path));
  EXPECT_THAT(msg, HasSubstr("Fortran-order"));
}

TEST(NpyErrors, HeaderThatIsNotADictionaryIsRefused) {
  test::TempDir dir;
  const std::string path = dir.path("open_brace.npy");
  // The closing brace lost (a damaged header): the keys alone would still parse.
  write_npy_raw(path, "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 2), ", std::string(16, '\0'));
  std::string msg = npy_error(path);
  EXPECT_THAT(msg, HasSubstr(path));
  EXPECT_THAT(msg, HasSubstr("not a dictionary"));
  write_npy_raw(path, "'descr': '<f4', 'fortran_order': False, 'shape': (2, 2), }", std::string(16, '\0'));
  EXPECT_THAT(npy_error(path), HasSubstr("not a dictionary"));
}

TEST(NpyErrors, ShapeThatIsNotAListOfNumbersIsRefused) {
  test::TempDir dir;
  const std::string path = dir.path("shape.npy");
  for (const std::string shape : {"2 2", "2, x, 2", "2.5,"}) {
    SCOPED_TRACE(shape);
    write_npy_raw(path, "{'descr': '<f4', 'fortran_order': False, 'shape': (" + shape + "), }", std::string(16, '\0'));
    const std::string msg = npy_error(path);
    EXPECT_THAT(msg, HasSubstr(path));
    EXPECT_THAT(msg, HasSubstr("not a list of dimensions"));
  }
  for (const std::string shape : {"", "4,", "2, 2", " 2 , 2 , "}) {
    SCOPED_TRACE(shape);
    write_npy_raw(path, "{'descr': '<f4', 'fortran_order': False, 'shape': (" + shape + "), }", std::string(16, '\0'));
    EXPECT_NO_THROW(io::read_npy(path));
  }
}

TEST(NpyErrors, UnsupportedDtypeIsNamed) {
  test::TempDir dir;
  for (const std::string descr : {">f4", "<c8", "<f2"}) {
    SCOPED_TRACE(descr);
    const std::string path = dir.path("dtype.npy");
    write_npy_raw(path, "{'descr': '" + descr + "', 'fortran_order': False, 'shape': (2,), }", std::string(16, '\0'));
    const std::string msg = npy_error(path);
    EXPECT_THAT(msg, HasSubstr(path));
    EXPECT_THAT(msg, HasSubstr("dtype '" + descr + "' is not supported"));
  }
}

TEST(NpyErrors, HugeShapeIsRefusedBeforeAllocating) {
  test::TempDir dir;
  const std::string path = dir.path("huge.npy");
  // 10^15 floats (4 PB): reading this would need an allocation no machine can make.
  write_npy_raw(path, "{'descr': '<f4', 'fortran_order': False, 'shape': (1000000, 1000000, 1000), }",
                std::string(64, '\0'));
  const std::string msg = npy_error(path);
  EXPECT_THAT(msg, HasSubstr(path));
  EXPECT_THAT(msg, HasSubstr("claims more than"));
}

TEST(NpyErrors, ShapeOverflowingSizeIsRefused) {
  test::TempDir dir;
  const std::string path = dir.path("overflow.npy");
  // 2^62 * 8 wraps to 0 in 64-bit arithmetic; the check must not be fooled by the wrap.
  write_npy_raw(path, "{'descr': '<f4', 'fortran_order': False, 'shape': (4611686018427387904, 8), }", "");
  const std::string msg = npy_error(path);
  EXPECT_THAT(msg, HasSubstr(path));
  EXPECT_THAT(msg, HasSubstr("claims more than"));
}

TEST(NpyErrors, DimensionBeyondInt64IsRefused) {
  test::TempDir dir;
  const std::string path = dir.path("toolong.npy");
  write_npy_raw(path, "{'descr': '<f4', 'fortran_order': False, 'shape': (99999999999999999999999,), }", "");
  // A chorus::Error naming the file, not a std::out_of_range escaping from the number parser.
  const std::string msg = npy_error(path);
  EXPECT_THAT(msg, HasSubstr(path));
}

TEST(NpyErrors, NegativeDimensionIsRefused) {
  test::TempDir dir;
  const std::string path = dir.path("negative.npy");
  // Enough payload for a (1, 3) array, so only the sign can make this fail.
  write_npy_raw(path, "{'descr': '<f4', 'fortran_order': False, 'shape': (-1, 3), }", std::string(12, '\0'));
  const std::string msg = npy_error(path);
  EXPECT_THAT(msg, HasSubstr(path));
  EXPECT_THAT(msg, HasSubstr("-1"));
}

TEST(NpyErrors, ShapeAboveCallersLimitIsRefused) {
  test::TempDir dir;
  const std::string path = dir.path("limit.npy");
  const std::vector<float> values(110, 1.0f);
  io::write_npy(path, {11, 10}, values.data());
  EXPECT_EQ(io::read_npy(path, 110).data.size(), 110u);
  const std::string msg = npy_error(path, 100);
  EXPECT_THAT(msg, HasSubstr(path));
  EXPECT_THAT(msg, HasSubstr("claims more than 100 values"));
}

}  // namespace
}  // namespace chorus
