// The same weights in every HDF5 layout the importer reads must give the same outputs:
// tf.keras 2, Keras 3 legacy .h5, weights-only with a JSON or YAML architecture, nested
// models, old list-style Sequential, Keras 3 functional configs, channels_first.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <fstream>

#include "io/data/npy.h"
#include "io/hdf5/hdf5_file.h"
#include "io/keras/keras_model.h"
#include "io/keras/keras_writer.h"
#include "io/model_file.h"
#include "reference/reference_ops.h"
#include "reference/test_util.h"

using namespace chorus;
using nlohmann::json;

namespace {

const char* kSmallCnn = R"({"class_name": "Sequential", "config": {"name": "small", "layers": [
 {"class_name": "InputLayer", "config": {"name": "in", "batch_input_shape": [null, 10, 10, 3]}},
 {"class_name": "Conv2D", "config": {"name": "conv", "filters": 6, "kernel_size": [3, 3], "padding": "same", "activation": "relu"}},
 {"class_name": "BatchNormalization", "config": {"name": "bn", "axis": -1}},
 {"class_name": "MaxPooling2D", "config": {"name": "pool", "pool_size": [2, 2]}},
 {"class_name": "Flatten", "config": {"name": "flat"}},
 {"class_name": "Dense", "config": {"name": "fc", "units": 4, "activation": "softmax"}}]}})";

using Written = test::KerasTestModel;

Written prepare(const std::string& config_text, std::uint64_t seed = 3) {
  return test::random_keras_model(config_text, seed);
}

// The model as STEM.h5, STEM.keras, and weights-only wo.h5 with its architecture arch.json.
void write_every_layout(const test::TempDir& dir, const Written& w, const std::string& stem) {
  io::write_keras_h5(dir.path(stem + ".h5"), w.config, w.spec, w.model, w.weights);
  io::write_keras_archive(dir.path(stem + ".keras"), w.config, w.spec, w.model, w.weights);
  io::write_keras_h5(dir.path("wo.h5"), w.config, w.spec, w.model, w.weights, io::KerasLayout::weights_only);
  std::ofstream(dir.path("arch.json")) << w.config.dump();
}

Tensor run(const std::string& path, const Tensor& in, const std::string& arch = "") {
  io::KerasLoadOptions o;
  o.arch_path = arch;
  return io::load_keras_model(path, o).forward(in);
}

}  // namespace

TEST(KerasLayouts, AllLayoutsGiveTheSameOutputs) {
  test::TempDir dir;
  Written w = prepare(kSmallCnn);
  io::write_keras_h5(dir.path("k2.h5"), w.config, w.spec, w.model, w.weights, io::KerasLayout::keras2);
  io::write_keras_h5(dir.path("k3.h5"), w.config, w.spec, w.model, w.weights, io::KerasLayout::keras3);
  io::write_keras_h5(dir.path("wo.h5"), w.config, w.spec, w.model, w.weights, io::KerasLayout::weights_only);
  std::ofstream(dir.path("arch.json")) << w.config.dump();
  Tensor in = test::random_tensor(2, {10, 10, 3}, 9);
  Tensor base = run(dir.path("k2.h5"), in);
  EXPECT_EQ(max_relative_error(run(dir.path("k3.h5"), in), base), 0.0);
  EXPECT_EQ(max_relative_error(run(dir.path("wo.h5"), in, dir.path("arch.json")), base), 0.0);
  // The Keras 3 file really has no ":0" suffixes and the weights-only one no model_config.
  io::H5File k3(dir.path("k3.h5"));
  EXPECT_TRUE(k3.is_dataset("/model_weights/conv/small/conv/kernel"));
  io::H5File wo(dir.path("wo.h5"));
  EXPECT_FALSE(wo.has_attribute("/", "model_config"));
  EXPECT_TRUE(wo.is_dataset("/conv/conv/kernel:0"));
}

TEST(KerasLayouts, WeightsOnlyWithYamlArchitecture) {
  test::TempDir dir;
  Written w = prepare(kSmallCnn);
  io::write_keras_h5(dir.path("wo.h5"), w.config, w.spec, w.model, w.weights, io::KerasLayout::weights_only);
  io::write_keras_h5(dir.path("k2.h5"), w.config, w.spec, w.model, w.weights);
  // What model.to_yaml() wrote (Keras 2.0-2.5), python tuple tags included.
  std::ofstream(dir.path("arch.yaml")) << R"(backend: tensorflow
class_name: Sequential
config:
  name: small
  layers:
  - class_name: InputLayer
    config:
      batch_input_shape: !!python/tuple [null, 10, 10, 3]
      dtype: float32
      name: in
  - class_name: Conv2D
    config: {name: conv, filters: 6, kernel_size: !!python/tuple [3, 3], padding: same, activation: relu, use_bias: true}
  - class_name: BatchNormalization
    config: {name: bn, axis: -1, epsilon: 0.001}
  - class_name: MaxPooling2D
    config: {name: pool, pool_size: [2, 2]}
  - class_name: Flatten
    config: {name: flat}
  - class_name: Dense
    config: {name: fc, units: 4, activation: softmax}
keras_version: 2.2.4
)";
  Tensor in = test::random_tensor(2, {10, 10, 3}, 9);
  EXPECT_EQ(max_relative_error(run(dir.path("wo.h5"), in, dir.path("arch.yaml")), run(dir.path("k2.h5"), in)), 0.0);
}

TEST(KerasLayouts, OldListStyleSequentialWithoutInputLayer) {
  const char* list_style = R"({"class_name": "Sequential", "config": [
   {"class_name": "Conv2D", "config": {"name": "conv", "batch_input_shape": [null, 10, 10, 3], "filters": 6, "kernel_size": [3, 3], "padding": "same", "activation": "relu"}},
   {"class_name": "BatchNormalization", "config": {"name": "bn", "axis": 3}},
   {"class_name": "MaxPooling2D", "config": {"name": "pool", "pool_size": [2, 2]}},
   {"class_name": "Flatten", "config": {"name": "flat"}},
   {"class_name": "Dense", "config": {"name": "fc", "units": 4, "activation": "softmax"}}]})";
  test::TempDir dir;
  Written a = prepare(kSmallCnn), b = prepare(list_style);
  io::write_keras_h5(dir.path("a.h5"), a.config, a.spec, a.model, a.weights);
  io::write_keras_h5(dir.path("b.h5"), b.config, b.spec, b.model, b.weights);
  Tensor in = test::random_tensor(1, {10, 10, 3}, 2);
  EXPECT_EQ(max_relative_error(run(dir.path("b.h5"), in), run(dir.path("a.h5"), in)), 0.0);
}

TEST(KerasLayouts, Keras3FunctionalConfig) {
  // Keras 3 config keys: batch_shape, module/registered_name, __keras_tensor__ inbound nodes.
  const char* k3 = R"({"module": "keras", "class_name": "Functional", "config": {"name": "f", "trainable": true,
   "layers": [
    {"module": "keras.layers", "class_name": "InputLayer", "config": {"batch_shape": [null, 8, 8, 2], "dtype": "float32", "name": "inp"}, "registered_name": null, "name": "inp", "inbound_nodes": []},
    {"module": "keras.layers", "class_name": "Conv2D", "config": {"name": "c", "filters": 3, "kernel_size": [3, 3], "padding": "same", "activation": "relu", "dtype": {"module": "keras", "class_name": "DTypePolicy", "config": {"name": "float32"}}},
     "registered_name": null, "build_config": {"input_shape": [null, 8, 8, 2]}, "name": "c",
     "inbound_nodes": [{"args": [{"class_name": "__keras_tensor__", "config": {"shape": [null, 8, 8, 2], "dtype": "float32", "keras_history": ["inp", 0, 0]}}], "kwargs": {}}]},
    {"module": "keras.layers", "class_name": "Conv2D", "config": {"name": "d", "filters": 3, "kernel_size": [1, 1]}, "name": "d",
     "inbound_nodes": [{"args": [{"class_name": "__keras_tensor__", "config": {"keras_history": ["inp", 0, 0]}}], "kwargs": {}}]},
    {"module": "keras.layers", "class_name": "Add", "config": {"name": "add"}, "name": "add",
     "inbound_nodes": [{"args": [[{"class_name": "__keras_tensor__", "config": {"keras_history": ["c", 0, 0]}}, {"class_name": "__keras_tensor__", "config": {"keras_history": ["d", 0, 0]}}]], "kwargs": {}}]},
    {"module": "keras.layers", "class_name": "Activation", "config": {"name": "hs", "activation": "hard_sigmoid"}, "name": "hs",
     "inbound_nodes": [{"args": [{"class_name": "__keras_tensor__", "config": {"keras_history": ["add", 0, 0]}}], "kwargs": {}}]}],
   "input_layers": ["inp", 0, 0], "output_layers": ["hs", 0, 0]}})";
  auto spec = io::parse_keras_config(json::parse(k3), "k3");
  EXPECT_TRUE(spec.keras3);
  ASSERT_EQ(spec.layers.size(), 4u);
  EXPECT_EQ(spec.layers[2].inbound, (std::vector<std::string>{"c", "d"}));
  test::TempDir dir;
  Written w = prepare(k3);
  io::write_keras_h5(dir.path("k3.h5"), w.config, w.spec, w.model, w.weights, io::KerasLayout::keras3);
  model::Model m = io::load_keras_model(dir.path("k3.h5"));
  Tensor in = test::random_tensor(1, {8, 8, 2}, 1, -5, 5);
  Tensor out = m.forward(in);
  // Keras 3's hard_sigmoid is relu6(x + 3) / 6: values strictly between 0 and 1 have slope 1/6.
  bool saw_inside = false;
  for (std::size_t i = 0; i < out.size(); ++i) {
    EXPECT_GE(out.data()[i], 0.0f);
    EXPECT_LE(out.data()[i], 1.0f);
    saw_inside |= out.data()[i] > 0.01f && out.data()[i] < 0.99f;
  }
  EXPECT_TRUE(saw_inside);
}

TEST(KerasLayouts, NestedModelsAsTeachableMachineExports) {
  // Sequential[ Sequential[ Functional feature extractor ], Sequential[ Dense, Dense ] ].
  const char* nested = R"({"class_name": "Sequential", "config": {"name": "outer", "layers": [
   {"class_name": "Sequential", "config": {"name": "sequential_1", "layers": [
     {"class_name": "Functional", "config": {"name": "features", "layers": [
        {"class_name": "InputLayer", "name": "input_1", "config": {"name": "input_1", "batch_input_shape": [null, 16, 16, 3]}, "inbound_nodes": []},
        {"class_name": "Conv2D", "name": "Conv1", "config": {"name": "Conv1", "filters": 8, "kernel_size": [3, 3], "strides": [2, 2], "padding": "same", "use_bias": false}, "inbound_nodes": [[["input_1", 0, 0, {}]]]},
        {"class_name": "BatchNormalization", "name": "bn_Conv1", "config": {"name": "bn_Conv1", "axis": -1}, "inbound_nodes": [[["Conv1", 0, 0, {}]]]},
        {"class_name": "ReLU", "name": "Conv1_relu", "config": {"name": "Conv1_relu", "max_value": 6.0}, "inbound_nodes": [[["bn_Conv1", 0, 0, {}]]]},
        {"class_name": "DepthwiseConv2D", "name": "dw", "config": {"name": "dw", "kernel_size": [3, 3], "padding": "same", "use_bias": false}, "inbound_nodes": [[["Conv1_relu", 0, 0, {}]]]},
        {"class_name": "Add", "name": "res", "config": {"name": "res"}, "inbound_nodes": [[["dw", 0, 0, {}], ["Conv1_relu", 0, 0, {}]]]},
        {"class_name": "GlobalAveragePooling2D", "name": "gap", "config": {"name": "gap"}, "inbound_nodes": [[["res", 0, 0, {}]]]}],
      "input_layers": [["input_1", 0, 0]], "output_layers": [["gap", 0, 0]]}}]}},
   {"class_name": "Sequential", "config": {"name": "sequential_3", "layers": [
     {"class_name": "Dense", "config": {"name": "dense_Dense1", "units": 10, "activation": "relu"}},
     {"class_name": "Dense", "config": {"name": "dense_Dense2", "units": 3, "activation": "softmax"}}]}}]}})";
  auto spec = io::parse_keras_config(json::parse(nested), "nested");
  ASSERT_EQ(spec.layers.size(), 8u);
  ASSERT_EQ(spec.inputs.size(), 1u);
  EXPECT_EQ(spec.inputs[0].name, "input_1");
  EXPECT_EQ(spec.layers[0].weight_group, "sequential_1");
  EXPECT_EQ(spec.layers[6].weight_group, "sequential_3");
  EXPECT_EQ(spec.layers[6].inbound, (std::vector<std::string>{"gap"}));
  test::TempDir dir;
  Written w = prepare(nested);
  io::write_keras_h5(dir.path("n.h5"), w.config, w.spec, w.model, w.weights);
  io::H5File f(dir.path("n.h5"));
  EXPECT_TRUE(f.is_dataset("/model_weights/sequential_1/Conv1/kernel:0"));
  EXPECT_TRUE(f.is_dataset("/model_weights/sequential_3/dense_Dense2/bias:0"));
  model::Model m = io::load_keras_model(dir.path("n.h5"));
  io::KerasLoadOptions raw;
  raw.optimize = false;
  model::Model plain = io::load_keras_model(dir.path("n.h5"), raw);
  Tensor in = test::random_tensor(2, {16, 16, 3}, 4);
  Tensor out = m.forward(in);
  EXPECT_EQ(out.shape(), (Shape{1, 1, 3}));
  EXPECT_LT(max_relative_error(out, plain.forward(in)), 1e-5);
}

TEST(KerasLayouts, ChannelsFirstEqualsChannelsLastOnTransposedInput) {
  // Same weights, one model channels_first, its twin channels_last. Kernels are stored the
  // same way by Keras for both; only the input layout and Flatten's order differ, so the
  // twin ends with global pooling to compare like with like; Flatten is checked separately.
  auto make = [](const char* format, const char* shape) {
    return std::string(R"({"class_name": "Sequential", "config": {"name": "cf", "layers": [
     {"class_name": "InputLayer", "config": {"name": "in", "batch_input_shape": )") + shape + R"(}},
     {"class_name": "Conv2D", "config": {"name": "conv", "filters": 5, "kernel_size": [3, 3], "strides": [2, 2], "padding": "same", "data_format": ")" + format + R"(", "activation": "relu"}},
     {"class_name": "BatchNormalization", "config": {"name": "bn", "axis": )" + (std::string(format) == "channels_first" ? "1" : "-1") + R"(}},
     {"class_name": "AveragePooling2D", "config": {"name": "pool", "pool_size": [2, 2], "data_format": ")" + format + R"("}},
     {"class_name": "GlobalMaxPooling2D", "config": {"name": "gmp", "data_format": ")" + format + R"("}},
     {"class_name": "Dense", "config": {"name": "fc", "units": 3}}]}})";
  };
  test::TempDir dir;
  Written first = prepare(make("channels_first", "[null, 4, 9, 11]"), 5);
  Written last = prepare(make("channels_last", "[null, 9, 11, 4]"), 5);
  EXPECT_TRUE(first.spec.channels_first);
  io::write_keras_h5(dir.path("first.h5"), first.config, first.spec, first.model, first.weights);
  io::write_keras_h5(dir.path("last.h5"), last.config, last.spec, last.model, last.weights);
  model::Model mf = io::load_keras_model(dir.path("first.h5"));
  EXPECT_TRUE(mf.channels_first());
  EXPECT_EQ(mf.input_shape(), (Shape{9, 11, 4}));  // stored NHWC inside
  Tensor in = test::random_tensor(2, {9, 11, 4}, 6);
  EXPECT_EQ(max_relative_error(mf.forward(in), run(dir.path("last.h5"), in)), 0.0);
}

// Flatten after channels_first layers, in the order the file's Keras used: Keras 2.0 wrote no
// data_format and flattened its (c, h, w) input in memory order; Keras 2.1 on writes
// data_format, and with channels_first moves the channels last first, giving (h, w, c) order.
// A model whose Flatten took the wrong order classified 7 % of MNIST right (the issue's file);
// here plain loops compute each order, and the Dense weights make every feature count.
TEST(KerasLayouts, FlattenAfterChannelsFirstFollowsTheFilesKeras) {
  const auto config = [](const char* flatten_format) {
    return std::string(R"({"class_name": "Sequential", "config": {"name": "cf", "layers": [
     {"class_name": "InputLayer", "config": {"name": "in", "batch_input_shape": [null, 2, 5, 6]}},
     {"class_name": "Conv2D", "config": {"name": "conv", "filters": 4, "kernel_size": [3, 3], "padding": "same", "data_format": "channels_first"}},
     {"class_name": "Flatten", "config": {"name": "flat")") +
           flatten_format + R"(}},
     {"class_name": "Dense", "config": {"name": "fc", "units": 3}}]}})";
  };
  struct Form {
    const char* name;
    const char* flatten_format;  // what the Flatten config holds
    bool chw;                    // Keras flattened in (c, h, w) order
  };
  for (const Form& form : {Form{"Keras 2.0 (no data_format)", "", true},
                           Form{"Keras 2.1+ channels_first", R"(, "data_format": "channels_first")", false},
                           Form{"Keras 2.1+ channels_last", R"(, "data_format": "channels_last")", true}}) {
    SCOPED_TRACE(form.name);
    test::TempDir dir;
    Written w = prepare(config(form.flatten_format), 11);
    io::write_keras_h5(dir.path("full.h5"), w.config, w.spec, w.model, w.weights);
    io::write_keras_h5(dir.path("wo.h5"), w.config, w.spec, w.model, w.weights, io::KerasLayout::weights_only);
    std::ofstream(dir.path("arch.json")) << w.config.dump();

    // The reference: the convolution on NHWC data (Keras stores the kernel alike for both
    // formats), the features in Keras' order, then the dense layer.
    Tensor in = test::random_tensor(2, {5, 6, 2}, 12);  // NHWC, as Chorus holds it
    ref::ConvParams p;
    p.kh = p.kw = 3;
    p.same = true;
    const Tensor conv = ref::conv2d(in, w.weights[0].at("kernel"), w.weights[0].at("bias"), 4, p);
    Tensor features(2, {1, 1, 5 * 6 * 4});
    for (int n = 0; n < 2; ++n)
      for (int y = 0; y < 5; ++y)
        for (int x = 0; x < 6; ++x)
          for (int c = 0; c < 4; ++c)
            features.at(n, 0, 0, form.chw ? (c * 5 + y) * 6 + x : (y * 6 + x) * 4 + c) = conv.at(n, y, x, c);
    const Tensor expected = ref::dense(features, w.weights[2].at("kernel"), w.weights[2].at("bias"), 3);
    EXPECT_LT(max_relative_error(run(dir.path("full.h5"), in), expected), 1e-5);
    EXPECT_LT(max_relative_error(run(dir.path("wo.h5"), in, dir.path("arch.json")), expected), 1e-5);
  }
}

// The same from files that neither Chorus nor Keras wrote: tests/data/keras20_flatten.py writes
// a weights-only file in Keras 2.0.5's layout with the YAML architecture of to_yaml() (a
// channels_first convolution, a Flatten without data_format, a Dense layer), as the issue's MNIST
// file was, and the model's outputs computed with numpy in Keras 2.0's (c, h, w) order.
TEST(KerasLayouts, Keras20FilesFromAnIndependentWriterFlattenInChannelOrder) {
  if (test::run_command("/usr/bin/python3 -c 'import h5py, numpy'").exit_code != 0)
    GTEST_SKIP() << "python3-h5py or python3-numpy is not installed";
  test::TempDir dir;
  auto made =
      test::run_command("/usr/bin/python3 " + test::source_path("tests/data/keras20_flatten.py") + " " + dir.path(""));
  ASSERT_EQ(made.exit_code, 0) << made.output;
  auto r = test::run_chorus("run " + dir.path("weights.h5") + " --arch " + dir.path("arch.yaml") + " --input " +
                            dir.path("x.npy") + " --quiet --output " + dir.path("out.npy"));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_LT(test::npy_error_vs_largest(dir.path("out.npy"), dir.path("expected.npy")), 1e-5);
}

// A layer called at several places (Keras' shared layers): each call is a node of the model, all
// calls hold one layer object and so one set of weights, read once from the file. Checked
// against plain loops, from .h5, .keras and weights-only files.
TEST(KerasLayouts, SharedLayersHoldOneSetOfWeights) {
  const char* config = R"({"class_name": "Functional", "config": {"name": "shared", "layers": [
   {"class_name": "InputLayer", "name": "in", "config": {"name": "in", "batch_input_shape": [null, 6, 6, 4]}, "inbound_nodes": []},
   {"class_name": "Conv2D", "name": "c", "config": {"name": "c", "filters": 4, "kernel_size": [3, 3], "padding": "same", "activation": "relu"},
    "inbound_nodes": [[["in", 0, 0, {}]], [["c", 0, 0, {}]]]},
   {"class_name": "Add", "name": "add", "config": {"name": "add"}, "inbound_nodes": [[["c", 0, 0, {}], ["c", 1, 0, {}]]]},
   {"class_name": "GlobalAveragePooling2D", "name": "gap", "config": {"name": "gap"}, "inbound_nodes": [[["add", 0, 0, {}]]]},
   {"class_name": "Dense", "name": "d", "config": {"name": "d", "units": 4, "activation": "tanh"},
    "inbound_nodes": [[["gap", 0, 0, {}]], [["d", 0, 0, {}]]]}],
   "input_layers": [["in", 0, 0]], "output_layers": [["d", 1, 0]]}})";
  test::TempDir dir;
  Written w = prepare(config);
  ASSERT_EQ(w.spec.layers.size(), 6u);
  EXPECT_EQ(w.spec.layers[1].name, "c_call1");
  EXPECT_EQ(w.spec.layers[1].shares_weights_of, 0);
  EXPECT_TRUE(w.model.is_shared(0));
  write_every_layout(dir, w, "s");

  Tensor in = test::random_tensor(2, {6, 6, 4}, 13);
  ref::ConvParams p;
  p.kh = p.kw = 3;
  p.same = true;
  const auto& cw = w.weights[0];
  const Tensor c0 = ref::activation(ref::conv2d(in, cw.at("kernel"), cw.at("bias"), 4, p), "relu");
  const Tensor c1 = ref::activation(ref::conv2d(c0, cw.at("kernel"), cw.at("bias"), 4, p), "relu");
  Tensor sum = c0;
  for (std::size_t i = 0; i < sum.size(); ++i) sum.data()[i] += c1.data()[i];
  const auto& dw = w.weights[4];
  const Tensor d0 =
      ref::activation(ref::dense(ref::global_pool(sum, false), dw.at("kernel"), dw.at("bias"), 4), "tanh");
  const Tensor expected = ref::activation(ref::dense(d0, dw.at("kernel"), dw.at("bias"), 4), "tanh");
  EXPECT_LT(max_relative_error(run(dir.path("s.h5"), in), expected), 1e-5);
  EXPECT_LT(max_relative_error(io::load_model_file(dir.path("s.keras")).forward(in), expected), 1e-5);
  EXPECT_LT(max_relative_error(run(dir.path("wo.h5"), in, dir.path("arch.json")), expected), 1e-5);
  // One weight set in memory for both calls.
  model::Model loaded = io::load_model_file(dir.path("s.h5"));
  std::size_t distinct = 0;
  for (std::size_t n = 0; n < loaded.nodes().size(); ++n) {
    bool seen = false;
    for (std::size_t k = 0; k < n; ++k) seen = seen || loaded.node(k).layer == loaded.node(n).layer;
    if (!seen) distinct += loaded.node(n).layer->weight_bytes();
  }
  EXPECT_EQ(distinct, (4u * 4 * 9 + 4 + 4 * 4 + 4) * sizeof(float));
}

// A Functional model of two inputs and two outputs, with a nested model called twice (its
// layers added again for the second call, sharing the first call's weights) and a dense layer
// shared between the two branches. Checked against plain loops, from .h5, .keras and
// weights-only files; the nested model's weights are stored once.
TEST(KerasLayouts, SeveralInputsAndOutputsAndANestedModelCalledTwice) {
  const char* config = R"({"class_name": "Functional", "config": {"name": "multi", "layers": [
   {"class_name": "InputLayer", "name": "img", "config": {"name": "img", "batch_input_shape": [null, 6, 6, 3]}, "inbound_nodes": []},
   {"class_name": "InputLayer", "name": "meta", "config": {"name": "meta", "batch_input_shape": [null, 3]}, "inbound_nodes": []},
   {"class_name": "Functional", "name": "enc", "config": {"name": "enc", "layers": [
     {"class_name": "InputLayer", "name": "x", "config": {"name": "x", "batch_input_shape": [null, 6, 6, 3]}, "inbound_nodes": []},
     {"class_name": "Conv2D", "name": "e", "config": {"name": "e", "filters": 3, "kernel_size": [3, 3], "padding": "same", "activation": "relu"}, "inbound_nodes": [[["x", 0, 0, {}]]]}],
     "input_layers": [["x", 0, 0]], "output_layers": [["e", 0, 0]]},
    "inbound_nodes": [[["img", 0, 0, {}]], [["enc", 0, 0, {}]]]},
   {"class_name": "GlobalAveragePooling2D", "name": "gap", "config": {"name": "gap"}, "inbound_nodes": [[["enc", 1, 0, {}]]]},
   {"class_name": "Dense", "name": "proj", "config": {"name": "proj", "units": 4, "activation": "tanh"}, "inbound_nodes": [[["gap", 0, 0, {}]], [["meta", 0, 0, {}]]]},
   {"class_name": "Add", "name": "sum", "config": {"name": "sum"}, "inbound_nodes": [[["proj", 0, 0, {}], ["proj", 1, 0, {}]]]},
   {"class_name": "Dense", "name": "scores", "config": {"name": "scores", "units": 2, "activation": "softmax"}, "inbound_nodes": [[["sum", 0, 0, {}]]]}],
   "input_layers": [["img", 0, 0], ["meta", 0, 0]], "output_layers": [["scores", 0, 0], ["enc", 0, 0]]}})";
  test::TempDir dir;
  Written w = prepare(config);
  ASSERT_EQ(w.spec.inputs.size(), 2u);
  EXPECT_EQ(w.spec.inputs[1].name, "meta");
  ASSERT_EQ(w.spec.layers.size(), 7u);
  EXPECT_EQ(w.spec.layers[1].name, "e_call1");
  EXPECT_EQ(w.spec.layers[1].shares_weights_of, 0);
  EXPECT_EQ(w.spec.outputs, (std::vector<std::string>{"scores", "e"}));
  write_every_layout(dir, w, "m");

  const Tensor img = test::random_tensor(3, {6, 6, 3}, 21), meta = test::random_tensor(3, {1, 1, 3}, 22);
  ref::ConvParams p;
  p.kh = p.kw = 3;
  p.same = true;
  const auto& ew = w.weights[0];
  const Tensor e0 = ref::activation(ref::conv2d(img, ew.at("kernel"), ew.at("bias"), 3, p), "relu");
  const Tensor e1 = ref::activation(ref::conv2d(e0, ew.at("kernel"), ew.at("bias"), 3, p), "relu");
  const auto& pw = w.weights[3];
  const Tensor a = ref::activation(ref::dense(ref::global_pool(e1, false), pw.at("kernel"), pw.at("bias"), 4), "tanh");
  const Tensor b = ref::activation(ref::dense(meta, pw.at("kernel"), pw.at("bias"), 4), "tanh");
  Tensor sum = a;
  for (std::size_t i = 0; i < sum.size(); ++i) sum.data()[i] += b.data()[i];
  const auto& sw = w.weights[6];
  const Tensor scores = ref::activation(ref::dense(sum, sw.at("kernel"), sw.at("bias"), 2), "softmax");

  for (const std::string file : {"m.h5", "m.keras", "wo.h5"}) {
    SCOPED_TRACE(file);
    io::ModelLoadOptions o;
    if (file == "wo.h5") o.arch_path = dir.path("arch.json");
    model::Model m = io::load_model_file(dir.path(file), o);
    ASSERT_EQ(m.inputs().size(), 2u);
    EXPECT_EQ(m.inputs()[0].name, "img");
    EXPECT_EQ(m.output_names(), (std::vector<std::string>{"scores", "e"}));
    const auto out = m.forward({&img, &meta});
    ASSERT_EQ(out.size(), 2u);
    EXPECT_LT(max_relative_error(out[0], scores), 1e-5);
    EXPECT_LT(max_relative_error(out[1], e0), 1e-5);
  }
  // The nested model's kernel is stored once, under its first call's name.
  io::H5File f(dir.path("m.h5"));
  EXPECT_TRUE(f.is_dataset("/model_weights/enc/e/kernel:0"));
  EXPECT_FALSE(f.is_group("/model_weights/enc/e_call1"));
}
