// Distributed runs under mpiexec must give the outputs of one process: every stage mode and
// plans mixing them, on chain and DAG models, with 2, 3, 4 and 9 ranks. Each run is bounded by
// `timeout`, so ranks that would wait forever fail the test instead of hanging CTest.
#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <regex>

#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmissing-field-initializers"
#define STB_IMAGE_WRITE_IMPLEMENTATION
#include <stb_image_write.h>
#pragma GCC diagnostic pop

#include "core/random.h"
#include "io/data/inputs.h"
#include "io/data/npy.h"
#include "io/model_file.h"
#include "reference/test_util.h"

using namespace chorus;
using nlohmann::json;

namespace {

constexpr int kFrames = 6;
constexpr std::uint64_t kSeed = 5;

// The models, written once per test binary.
class Models {
 public:
  static Models& get() {
    static Models m;
    return m;
  }
  // Keras models are written here; "onnx_NAME" is tests/data/onnx/NAME.onnx (PyTorch exports),
  // "NAME_keras" a Keras 3 .keras archive.
  std::string path(const std::string& name) const {
    if (name.rfind("onnx_", 0) == 0) return test::source_path("tests/data/onnx/" + name.substr(5) + ".onnx");
    if (name.size() > 6 && name.substr(name.size() - 6) == "_keras") return dir_.path(name + ".keras");
    return dir_.path(name + ".h5");
  }

 private:
  Models() {
    setenv("OMPI_ALLOW_RUN_AS_ROOT", "1", 1);
    setenv("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1", 1);
    test::write_random_model(read(test::source_path("models/lenet5.json")), path("lenet5"));
    test::write_random_model(kVggStyle, path("vgg_small"));
    test::write_random_model(kResidual, path("residual"));
    test::write_random_model(kResidual, path("residual_keras"));
    test::write_random_model(kShared, path("shared"));
    test::write_random_model(kSharedDepthwise, path("shared_dw"));
    test::write_random_model(kSharedAttention, path("shared_mha"));
    test::write_random_model(kMultiInputOutput, path("multi_io"));
    test::write_random_model(kMultiInputOutput, path("multi_io_keras"));
    test::write_random_model(kDenseHeavy, path("dense_heavy"));
    test::write_random_model(kClip, path("clip"));
    test::write_random_model(kConvOnly, path("conv_only"));
    test::write_random_model(kClipChannelsFirst, path("clip_first"));
    // MobileNetV2 as in the zoo, at 64x64 so that the test stays quick.
    json mobilenet = json::parse(read(test::source_path("models/mobilenetv2.json")));
    mobilenet["config"]["layers"][0]["config"]["batch_input_shape"] = {nullptr, 64, 64, 3};
    test::write_random_model(mobilenet.dump(), path("mobilenetv2_64"));
    // A transfer-learning model as Keras 3 saves one: augmentation and rescaling in front of a
    // nested MobileNetV2 base, a new head, in a .keras archive.
    json base = mobilenet;
    base["name"] = base["config"]["name"] = "mobilenetv2_base";
    base["inbound_nodes"] = json::parse(R"([[["rescale", 0, 0, {}]]])");
    json transfer = {{"class_name", "Functional"},
                     {"config",
                      {{"name", "transfer"},
                       {"layers",
                        {{{"class_name", "InputLayer"},
                          {"name", "img"},
                          {"config", {{"name", "img"}, {"batch_input_shape", {nullptr, 64, 64, 3}}}},
                          {"inbound_nodes", json::array()}},
                         {{"class_name", "RandomFlip"},
                          {"name", "flip"},
                          {"config", {{"name", "flip"}}},
                          {"inbound_nodes", json::parse(R"([[["img", 0, 0, {}]]])")}},
                         {{"class_name", "Rescaling"},
                          {"name", "rescale"},
                          {"config", {{"name", "rescale"}, {"scale", 1.0 / 127.5}, {"offset", -1.0}}},
                          {"inbound_nodes", json::parse(R"([[["flip", 0, 0, {}]]])")}},
                         base,
                         {{"class_name", "Dense"},
                          {"name", "head"},
                          {"config", {{"name", "head"}, {"units", 5}, {"activation", "softmax"}}},
                          {"inbound_nodes", json::parse(R"([[["mobilenetv2_base", 0, 0, {}]]])")}}}},
                       {"input_layers", {{"img", 0, 0}}},
                       {"output_layers", {{"head", 0, 0}}}}}};
    test::write_random_model(transfer.dump(), path("transfer_keras"));
    test::write_random_model(kEfficientNetStyle, path("efficientnet_keras"));
  }
  static std::string read(const std::string& file) {
    std::ifstream in(file);
    return std::string(std::istreambuf_iterator<char>(in), {});
  }
  // A small C3D: 3-D convolutions and poolings, padding, then fully connected layers.
  static constexpr const char* kClip = R"({"class_name": "Sequential", "config": {"name": "clip", "layers": [
   {"class_name": "InputLayer", "config": {"name": "in", "batch_input_shape": [null, 4, 16, 16, 3]}},
   {"class_name": "Conv3D", "config": {"name": "c1", "filters": 8, "kernel_size": [3, 3, 3], "padding": "same", "activation": "relu"}},
   {"class_name": "MaxPooling3D", "config": {"name": "p1", "pool_size": [1, 2, 2]}},
   {"class_name": "Conv3D", "config": {"name": "c2", "filters": 12, "kernel_size": [3, 3, 3], "padding": "same", "activation": "relu"}},
   {"class_name": "ZeroPadding3D", "config": {"name": "pad", "padding": [[0, 0], [0, 1], [0, 1]]}},
   {"class_name": "MaxPooling3D", "config": {"name": "p2", "pool_size": [2, 2, 2]}},
   {"class_name": "Flatten", "config": {"name": "flat"}},
   {"class_name": "Dense", "config": {"name": "fc1", "units": 24, "activation": "relu"}},
   {"class_name": "Dense", "config": {"name": "fc2", "units": 7, "activation": "softmax"}}]}})";
  // The same in channels_first (NCDHW inputs, a Flatten that moves channels last first).
  static constexpr const char* kClipChannelsFirst = R"({"class_name": "Sequential", "config": {"name": "clip_first", "layers": [
   {"class_name": "InputLayer", "config": {"name": "in", "batch_input_shape": [null, 3, 4, 16, 16]}},
   {"class_name": "Conv3D", "config": {"name": "c1", "filters": 8, "kernel_size": [3, 3, 3], "padding": "same", "activation": "relu", "data_format": "channels_first"}},
   {"class_name": "AveragePooling3D", "config": {"name": "p1", "pool_size": [1, 2, 2], "data_format": "channels_first"}},
   {"class_name": "Conv3D", "config": {"name": "c2", "filters": 12, "kernel_size": [3, 3, 3], "padding": "valid", "activation": "relu", "data_format": "channels_first"}},
   {"class_name": "Flatten", "config": {"name": "flat", "data_format": "channels_first"}},
   {"class_name": "Dense", "config": {"name": "fc1", "units": 7, "activation": "softmax"}}]}})";
  // Fully convolutional on a wide input: a split-spatial stage may be the last, handing its
  // tiles to the sink.
  static constexpr const char* kConvOnly = R"({"class_name": "Sequential", "config": {"name": "conv_only", "layers": [
   {"class_name": "InputLayer", "config": {"name": "in", "batch_input_shape": [null, 12, 20, 3]}},
   {"class_name": "Conv2D", "config": {"name": "c1", "filters": 8, "kernel_size": [3, 3], "padding": "same", "activation": "relu"}},
   {"class_name": "MaxPooling2D", "config": {"name": "p1", "pool_size": [2, 2]}},
   {"class_name": "Conv2D", "config": {"name": "c2", "filters": 6, "kernel_size": [3, 3], "padding": "same"}}]}})";
  static constexpr const char* kVggStyle = R"({"class_name": "Sequential", "config": {"name": "vgg_small", "layers": [
   {"class_name": "InputLayer", "config": {"name": "in", "batch_input_shape": [null, 32, 32, 3]}},
   {"class_name": "Conv2D", "config": {"name": "c1", "filters": 16, "kernel_size": [3, 3], "padding": "same", "activation": "relu"}},
   {"class_name": "Conv2D", "config": {"name": "c2", "filters": 16, "kernel_size": [3, 3], "padding": "same", "activation": "relu"}},
   {"class_name": "MaxPooling2D", "config": {"name": "p1", "pool_size": [2, 2]}},
   {"class_name": "Conv2D", "config": {"name": "c3", "filters": 32, "kernel_size": [3, 3], "strides": [2, 2], "padding": "same", "activation": "relu"}},
   {"class_name": "Conv2D", "config": {"name": "c4", "filters": 32, "kernel_size": [3, 3], "padding": "valid", "activation": "relu"}},
   {"class_name": "MaxPooling2D", "config": {"name": "p2", "pool_size": [2, 2], "padding": "same"}},
   {"class_name": "Flatten", "config": {"name": "flat"}},
   {"class_name": "Dense", "config": {"name": "fc1", "units": 64, "activation": "relu"}},
   {"class_name": "Dense", "config": {"name": "fc2", "units": 10, "activation": "softmax"}}]}})";
  static constexpr const char* kResidual = R"({"class_name": "Functional", "config": {"name": "residual", "layers": [
   {"class_name": "InputLayer", "name": "in", "config": {"name": "in", "batch_input_shape": [null, 16, 16, 3]}, "inbound_nodes": []},
   {"class_name": "Conv2D", "name": "stem", "config": {"name": "stem", "filters": 12, "kernel_size": [3, 3], "padding": "same", "use_bias": false}, "inbound_nodes": [[["in", 0, 0, {}]]]},
   {"class_name": "BatchNormalization", "name": "stem_bn", "config": {"name": "stem_bn", "axis": -1}, "inbound_nodes": [[["stem", 0, 0, {}]]]},
   {"class_name": "Activation", "name": "stem_relu", "config": {"name": "stem_relu", "activation": "relu"}, "inbound_nodes": [[["stem_bn", 0, 0, {}]]]},
   {"class_name": "Conv2D", "name": "a1", "config": {"name": "a1", "filters": 12, "kernel_size": [3, 3], "padding": "same", "activation": "relu"}, "inbound_nodes": [[["stem_relu", 0, 0, {}]]]},
   {"class_name": "Conv2D", "name": "a2", "config": {"name": "a2", "filters": 12, "kernel_size": [3, 3], "padding": "same"}, "inbound_nodes": [[["a1", 0, 0, {}]]]},
   {"class_name": "Add", "name": "add1", "config": {"name": "add1"}, "inbound_nodes": [[["stem_relu", 0, 0, {}], ["a2", 0, 0, {}]]]},
   {"class_name": "Activation", "name": "relu1", "config": {"name": "relu1", "activation": "relu"}, "inbound_nodes": [[["add1", 0, 0, {}]]]},
   {"class_name": "Conv2D", "name": "b1", "config": {"name": "b1", "filters": 24, "kernel_size": [3, 3], "strides": [2, 2], "padding": "same", "activation": "relu"}, "inbound_nodes": [[["relu1", 0, 0, {}]]]},
   {"class_name": "Conv2D", "name": "b_short", "config": {"name": "b_short", "filters": 24, "kernel_size": [1, 1], "strides": [2, 2]}, "inbound_nodes": [[["relu1", 0, 0, {}]]]},
   {"class_name": "Conv2D", "name": "b2", "config": {"name": "b2", "filters": 24, "kernel_size": [3, 3], "padding": "same"}, "inbound_nodes": [[["b1", 0, 0, {}]]]},
   {"class_name": "Add", "name": "add2", "config": {"name": "add2"}, "inbound_nodes": [[["b_short", 0, 0, {}], ["b2", 0, 0, {}]]]},
   {"class_name": "Concatenate", "name": "cat", "config": {"name": "cat", "axis": -1}, "inbound_nodes": [[["add2", 0, 0, {}], ["b1", 0, 0, {}]]]},
   {"class_name": "GlobalAveragePooling2D", "name": "gap", "config": {"name": "gap"}, "inbound_nodes": [[["cat", 0, 0, {}]]]},
   {"class_name": "Dense", "name": "out", "config": {"name": "out", "units": 7, "activation": "softmax"}, "inbound_nodes": [[["gap", 0, 0, {}]]]}
  ], "input_layers": [["in", 0, 0]], "output_layers": [["out", 0, 0]]}})";
  // A convolution and a dense layer each called twice (shared layers).
  static constexpr const char* kShared = R"({"class_name": "Functional", "config": {"name": "shared", "layers": [
   {"class_name": "InputLayer", "name": "in", "config": {"name": "in", "batch_input_shape": [null, 12, 12, 6]}, "inbound_nodes": []},
   {"class_name": "Conv2D", "name": "c", "config": {"name": "c", "filters": 6, "kernel_size": [3, 3], "padding": "same", "activation": "relu"},
    "inbound_nodes": [[["in", 0, 0, {}]], [["c", 0, 0, {}]]]},
   {"class_name": "Add", "name": "add", "config": {"name": "add"}, "inbound_nodes": [[["c", 0, 0, {}], ["c", 1, 0, {}]]]},
   {"class_name": "GlobalAveragePooling2D", "name": "gap", "config": {"name": "gap"}, "inbound_nodes": [[["add", 0, 0, {}]]]},
   {"class_name": "Dense", "name": "d", "config": {"name": "d", "units": 6, "activation": "tanh"},
    "inbound_nodes": [[["gap", 0, 0, {}]], [["d", 0, 0, {}]]]}],
   "input_layers": [["in", 0, 0]], "output_layers": [["d", 1, 0]]}})";
  // A depthwise convolution called twice.
  static constexpr const char* kSharedDepthwise =
      R"({"class_name": "Functional", "config": {"name": "shared_dw", "layers": [
   {"class_name": "InputLayer", "name": "in", "config": {"name": "in", "batch_input_shape": [null, 12, 12, 6]}, "inbound_nodes": []},
   {"class_name": "DepthwiseConv2D", "name": "dw", "config": {"name": "dw", "kernel_size": [3, 3], "padding": "same", "activation": "relu"},
    "inbound_nodes": [[["in", 0, 0, {}]], [["dw", 0, 0, {}]]]},
   {"class_name": "Add", "name": "add", "config": {"name": "add"}, "inbound_nodes": [[["dw", 0, 0, {}], ["dw", 1, 0, {}]]]},
   {"class_name": "GlobalAveragePooling2D", "name": "gap", "config": {"name": "gap"}, "inbound_nodes": [[["add", 0, 0, {}]]]},
   {"class_name": "Dense", "name": "out", "config": {"name": "out", "units": 4, "activation": "softmax"}, "inbound_nodes": [[["gap", 0, 0, {}]]]}],
   "input_layers": [["in", 0, 0]], "output_layers": [["out", 0, 0]]}})";
  // Self-attention of 2 heads called twice, on the tokens and on its own output.
  static constexpr const char* kSharedAttention =
      R"({"class_name": "Functional", "config": {"name": "shared_mha", "layers": [
   {"class_name": "InputLayer", "name": "img", "config": {"name": "img", "batch_input_shape": [null, 8, 8, 3]}, "inbound_nodes": []},
   {"class_name": "Conv2D", "name": "patches", "config": {"name": "patches", "filters": 8, "kernel_size": [2, 2], "strides": [2, 2]}, "inbound_nodes": [[["img", 0, 0, {}]]]},
   {"class_name": "Reshape", "name": "tokens", "config": {"name": "tokens", "target_shape": [16, 8]}, "inbound_nodes": [[["patches", 0, 0, {}]]]},
   {"class_name": "MultiHeadAttention", "name": "mha", "config": {"name": "mha", "num_heads": 2, "key_dim": 4, "use_bias": true},
    "inbound_nodes": [[["tokens", 0, 0, {"value": ["tokens", 0, 0]}]], [["mha", 0, 0, {"value": ["mha", 0, 0]}]]]},
   {"class_name": "Add", "name": "add", "config": {"name": "add"}, "inbound_nodes": [[["mha", 0, 0, {}], ["mha", 1, 0, {}]]]},
   {"class_name": "GlobalAveragePooling1D", "name": "pool", "config": {"name": "pool"}, "inbound_nodes": [[["add", 0, 0, {}]]]},
   {"class_name": "Dense", "name": "head", "config": {"name": "head", "units": 3, "activation": "softmax"}, "inbound_nodes": [[["pool", 0, 0, {}]]]}],
   "input_layers": [["img", 0, 0]], "output_layers": [["head", 0, 0]]}})";
  // A transfer-learning model on a nested EfficientNet-style base, as keras.applications builds
  // one in Keras 3: Rescaling, Normalization and per-channel Rescaling in front, a strided swish
  // stem, an MBConv block (expansion, depthwise, squeeze-and-excitation: pooling, Reshape to
  // (1, 1, c), two 1x1 convolutions and a Multiply; projection, Dropout, residual Add), then a
  // head. Keras 3 config keys.
  static constexpr const char* kEfficientNetStyle = R"({"module": "keras", "class_name": "Functional", "config": {"name": "effnet_transfer", "layers": [
   {"class_name": "InputLayer", "name": "img", "config": {"name": "img", "batch_shape": [null, 32, 32, 3]}, "inbound_nodes": []},
   {"class_name": "Functional", "name": "efficientnet_base", "config": {"name": "efficientnet_base", "layers": [
     {"class_name": "InputLayer", "name": "x", "config": {"name": "x", "batch_shape": [null, 32, 32, 3]}, "inbound_nodes": []},
     {"class_name": "Rescaling", "name": "rescaling", "config": {"name": "rescaling", "scale": 0.00392156862, "offset": 0.0}, "inbound_nodes": [[["x", 0, 0, {}]]]},
     {"class_name": "Normalization", "name": "normalization", "config": {"name": "normalization", "axis": -1, "mean": [0.485, 0.456, 0.406], "variance": [0.052, 0.050, 0.051]}, "inbound_nodes": [[["rescaling", 0, 0, {}]]]},
     {"class_name": "Rescaling", "name": "rescaling_1", "config": {"name": "rescaling_1", "scale": [0.229, 0.224, 0.225], "offset": 0.0}, "inbound_nodes": [[["normalization", 0, 0, {}]]]},
     {"class_name": "ZeroPadding2D", "name": "stem_conv_pad", "config": {"name": "stem_conv_pad", "padding": [[0, 1], [0, 1]]}, "inbound_nodes": [[["rescaling_1", 0, 0, {}]]]},
     {"class_name": "Conv2D", "name": "stem_conv", "config": {"name": "stem_conv", "filters": 16, "kernel_size": [3, 3], "strides": [2, 2], "padding": "valid", "use_bias": false}, "inbound_nodes": [[["stem_conv_pad", 0, 0, {}]]]},
     {"class_name": "BatchNormalization", "name": "stem_bn", "config": {"name": "stem_bn", "axis": -1}, "inbound_nodes": [[["stem_conv", 0, 0, {}]]]},
     {"class_name": "Activation", "name": "stem_activation", "config": {"name": "stem_activation", "activation": "swish"}, "inbound_nodes": [[["stem_bn", 0, 0, {}]]]},
     {"class_name": "Conv2D", "name": "block1a_expand_conv", "config": {"name": "block1a_expand_conv", "filters": 64, "kernel_size": [1, 1], "use_bias": false}, "inbound_nodes": [[["stem_activation", 0, 0, {}]]]},
     {"class_name": "BatchNormalization", "name": "block1a_expand_bn", "config": {"name": "block1a_expand_bn", "axis": -1}, "inbound_nodes": [[["block1a_expand_conv", 0, 0, {}]]]},
     {"class_name": "Activation", "name": "block1a_expand_activation", "config": {"name": "block1a_expand_activation", "activation": "swish"}, "inbound_nodes": [[["block1a_expand_bn", 0, 0, {}]]]},
     {"class_name": "DepthwiseConv2D", "name": "block1a_dwconv", "config": {"name": "block1a_dwconv", "kernel_size": [3, 3], "padding": "same", "use_bias": false}, "inbound_nodes": [[["block1a_expand_activation", 0, 0, {}]]]},
     {"class_name": "BatchNormalization", "name": "block1a_bn", "config": {"name": "block1a_bn", "axis": -1}, "inbound_nodes": [[["block1a_dwconv", 0, 0, {}]]]},
     {"class_name": "Activation", "name": "block1a_activation", "config": {"name": "block1a_activation", "activation": "swish"}, "inbound_nodes": [[["block1a_bn", 0, 0, {}]]]},
     {"class_name": "GlobalAveragePooling2D", "name": "block1a_se_squeeze", "config": {"name": "block1a_se_squeeze"}, "inbound_nodes": [[["block1a_activation", 0, 0, {}]]]},
     {"class_name": "Reshape", "name": "block1a_se_reshape", "config": {"name": "block1a_se_reshape", "target_shape": [1, 1, 64]}, "inbound_nodes": [[["block1a_se_squeeze", 0, 0, {}]]]},
     {"class_name": "Conv2D", "name": "block1a_se_reduce", "config": {"name": "block1a_se_reduce", "filters": 4, "kernel_size": [1, 1], "activation": "swish"}, "inbound_nodes": [[["block1a_se_reshape", 0, 0, {}]]]},
     {"class_name": "Conv2D", "name": "block1a_se_expand", "config": {"name": "block1a_se_expand", "filters": 64, "kernel_size": [1, 1], "activation": "sigmoid"}, "inbound_nodes": [[["block1a_se_reduce", 0, 0, {}]]]},
     {"class_name": "Multiply", "name": "block1a_se_excite", "config": {"name": "block1a_se_excite"}, "inbound_nodes": [[["block1a_activation", 0, 0, {}], ["block1a_se_expand", 0, 0, {}]]]},
     {"class_name": "Conv2D", "name": "block1a_project_conv", "config": {"name": "block1a_project_conv", "filters": 16, "kernel_size": [1, 1], "use_bias": false}, "inbound_nodes": [[["block1a_se_excite", 0, 0, {}]]]},
     {"class_name": "BatchNormalization", "name": "block1a_project_bn", "config": {"name": "block1a_project_bn", "axis": -1}, "inbound_nodes": [[["block1a_project_conv", 0, 0, {}]]]},
     {"class_name": "Dropout", "name": "block1a_drop", "config": {"name": "block1a_drop", "rate": 0.2}, "inbound_nodes": [[["block1a_project_bn", 0, 0, {}]]]},
     {"class_name": "Add", "name": "block1a_add", "config": {"name": "block1a_add"}, "inbound_nodes": [[["block1a_drop", 0, 0, {}], ["stem_activation", 0, 0, {}]]]},
     {"class_name": "Conv2D", "name": "top_conv", "config": {"name": "top_conv", "filters": 32, "kernel_size": [1, 1], "use_bias": false}, "inbound_nodes": [[["block1a_add", 0, 0, {}]]]},
     {"class_name": "BatchNormalization", "name": "top_bn", "config": {"name": "top_bn", "axis": -1}, "inbound_nodes": [[["top_conv", 0, 0, {}]]]},
     {"class_name": "Activation", "name": "top_activation", "config": {"name": "top_activation", "activation": "swish"}, "inbound_nodes": [[["top_bn", 0, 0, {}]]]}],
     "input_layers": [["x", 0, 0]], "output_layers": [["top_activation", 0, 0]]},
    "inbound_nodes": [[["img", 0, 0, {}]]]},
   {"class_name": "GlobalAveragePooling2D", "name": "avg_pool", "config": {"name": "avg_pool"}, "inbound_nodes": [[["efficientnet_base", 0, 0, {}]]]},
   {"class_name": "Dropout", "name": "top_dropout", "config": {"name": "top_dropout", "rate": 0.2}, "inbound_nodes": [[["avg_pool", 0, 0, {}]]]},
   {"class_name": "Dense", "name": "predictions", "config": {"name": "predictions", "units": 5, "activation": "softmax"}, "inbound_nodes": [[["top_dropout", 0, 0, {}]]]}
  ], "input_layers": [["img", 0, 0]], "output_layers": [["predictions", 0, 0]]}})";
  // Two inputs (an image and a vector), two outputs (class scores and a map), a nested model
  // called twice (its second call shares the first's weights) and a shared dense layer.
  static constexpr const char* kMultiInputOutput = R"({"class_name": "Functional", "config": {"name": "multi_io", "layers": [
   {"class_name": "InputLayer", "name": "img", "config": {"name": "img", "batch_input_shape": [null, 12, 12, 3]}, "inbound_nodes": []},
   {"class_name": "InputLayer", "name": "meta", "config": {"name": "meta", "batch_input_shape": [null, 8]}, "inbound_nodes": []},
   {"class_name": "Conv2D", "name": "c1", "config": {"name": "c1", "filters": 8, "kernel_size": [3, 3], "padding": "same", "activation": "relu"}, "inbound_nodes": [[["img", 0, 0, {}]]]},
   {"class_name": "Functional", "name": "encoder", "config": {"name": "encoder", "layers": [
     {"class_name": "InputLayer", "name": "x", "config": {"name": "x", "batch_input_shape": [null, 12, 12, 8]}, "inbound_nodes": []},
     {"class_name": "Conv2D", "name": "e1", "config": {"name": "e1", "filters": 8, "kernel_size": [3, 3], "padding": "same"}, "inbound_nodes": [[["x", 0, 0, {}]]]},
     {"class_name": "BatchNormalization", "name": "e1_bn", "config": {"name": "e1_bn", "axis": -1}, "inbound_nodes": [[["e1", 0, 0, {}]]]},
     {"class_name": "Activation", "name": "e1_relu", "config": {"name": "e1_relu", "activation": "relu"}, "inbound_nodes": [[["e1_bn", 0, 0, {}]]]}],
     "input_layers": [["x", 0, 0]], "output_layers": [["e1_relu", 0, 0]]},
    "inbound_nodes": [[["c1", 0, 0, {}]], [["encoder", 0, 0, {}]]]},
   {"class_name": "MaxPooling2D", "name": "pool", "config": {"name": "pool", "pool_size": [2, 2]}, "inbound_nodes": [[["encoder", 1, 0, {}]]]},
   {"class_name": "GlobalAveragePooling2D", "name": "gap", "config": {"name": "gap"}, "inbound_nodes": [[["pool", 0, 0, {}]]]},
   {"class_name": "Dense", "name": "m1", "config": {"name": "m1", "units": 8, "activation": "relu"}, "inbound_nodes": [[["meta", 0, 0, {}]], [["gap", 0, 0, {}]]]},
   {"class_name": "Concatenate", "name": "cat", "config": {"name": "cat", "axis": -1}, "inbound_nodes": [[["m1", 1, 0, {}], ["m1", 0, 0, {}]]]},
   {"class_name": "Dense", "name": "scores", "config": {"name": "scores", "units": 4, "activation": "softmax"}, "inbound_nodes": [[["cat", 0, 0, {}]]]},
   {"class_name": "Conv2D", "name": "mask", "config": {"name": "mask", "filters": 2, "kernel_size": [1, 1], "activation": "sigmoid"}, "inbound_nodes": [[["pool", 0, 0, {}]]]}
  ], "input_layers": [["img", 0, 0], ["meta", 0, 0]], "output_layers": [["scores", 0, 0], ["mask", 0, 0]]}})";
  // Split by input, d1's sums are reduce-scattered into d2's input slices, and d2's (1024 units)
  // are reduced in two parts of channels, the first while d2 computes the second.
  static constexpr const char* kDenseHeavy =
      R"({"class_name": "Sequential", "config": {"name": "dense_heavy", "layers": [
   {"class_name": "InputLayer", "config": {"name": "in", "batch_input_shape": [null, 256]}},
   {"class_name": "Dense", "config": {"name": "d1", "units": 512, "activation": "relu"}},
   {"class_name": "Dropout", "config": {"name": "drop", "rate": 0.5}},
   {"class_name": "Dense", "config": {"name": "d2", "units": 1024, "activation": "tanh"}},
   {"class_name": "BatchNormalization", "config": {"name": "bn", "axis": -1}},
   {"class_name": "Dense", "config": {"name": "d3", "units": 10, "activation": "softmax"}}]}})";

  test::TempDir dir_;
};

// Outputs of one process, computed in this test binary with the library: one batch per
// model output.
std::vector<Tensor> single_process(const std::string& model_path) {
  model::Model m = io::load_model_file(model_path);
  io::InputOptions o;
  o.synthetic = kFrames;
  o.seed = kSeed;
  std::vector<io::NamedInput> inputs;
  std::size_t floats = 0;
  for (const auto& in : m.inputs()) {
    inputs.push_back({in.name, in.shape});
    floats += in.shape.size();
  }
  auto source = io::open_model_inputs({}, inputs, o);
  std::vector<Tensor> out;
  for (int v : m.outputs()) out.emplace_back(kFrames, m.shape_of(v));
  std::vector<float> frame(floats);
  for (int i = 0; i < kFrames; ++i) {
    source->read(i, frame.data());
    std::vector<Tensor> x;
    const float* next = frame.data();
    for (const auto& in : m.inputs()) {
      x.emplace_back(1, in.shape);
      std::copy(next, next + in.shape.size(), x.back().data());
      next += in.shape.size();
    }
    std::vector<const Tensor*> pointers;
    for (const auto& t : x) pointers.push_back(&t);
    const std::vector<Tensor> y = m.forward(pointers);
    for (std::size_t k = 0; k < y.size(); ++k) std::copy(y[k].data(), y[k].data() + y[k].size(), out[k].frame(i));
  }
  return out;
}

// Runs chorus under mpiexec; `how` is "--strategy NAME" or "--plan FILE".
test::CommandResult mpirun(int ranks, const std::string& model, const std::string& how, const std::string& extra) {
  return test::run_command("timeout -k 5 120 mpiexec --oversubscribe -np " + std::to_string(ranks) + " " CHORUS_BINARY +
                           " run " + model + " --synthetic " + std::to_string(kFrames) + " --seed " +
                           std::to_string(kSeed) + " --quiet " + how + " " + extra);
}

void expect_same_as_one_process(const std::string& model_name, int ranks, const std::string& how) {
  SCOPED_TRACE(model_name + " -np " + std::to_string(ranks) + " " + how);
  test::TempDir dir;
  const std::string model = Models::get().path(model_name);
  auto r = mpirun(ranks, model, how, "--output " + dir.path("out.npy") + " --report " + dir.path("report.json"));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const std::vector<Tensor> expected_outputs = single_process(model);
  const model::Model m = io::load_model_structure(model, "", true).model;
  for (std::size_t k = 0; k < expected_outputs.size(); ++k) {
    // One file per output for a model of several: out.NAME.npy.
    const std::string file = expected_outputs.size() == 1 ? dir.path("out.npy")
                                                           : dir.path("out." + m.output_names()[k] + ".npy");
    SCOPED_TRACE(file);
    const Tensor& expected = expected_outputs[k];
    io::NpyArray got = io::read_npy(file);
    ASSERT_EQ(got.shape[0], kFrames) << "frame count";
    ASSERT_EQ(got.data.size(), expected.size());
    Tensor actual(kFrames, expected.shape());
    std::copy(got.data.begin(), got.data.end(), actual.data());
    // Frame by frame, so that a reordering shows as such.
    for (int i = 0; i < kFrames; ++i) {
      Tensor a(1, expected.shape()), e(1, expected.shape());
      std::copy(actual.frame(i), actual.frame(i) + actual.frame_size(), a.data());
      if (m.channels_first() && (expected.shape().h > 1 || expected.shape().w > 1))
        nhwc_to_nchw(expected.frame(i), e.data(), expected.shape());  // as written for channels_first models
      else
        std::copy(expected.frame(i), expected.frame(i) + expected.frame_size(), e.data());
      EXPECT_LE(max_relative_error(a, e), 1e-5) << "frame " << i;
    }
  }
  json report = json::parse(std::ifstream(dir.path("report.json")));
  EXPECT_EQ(report["frames"], kFrames);
  EXPECT_EQ(report["ranks"].size(), static_cast<std::size_t>(ranks));
  for (const char* key : {"p50", "p90", "p99", "max"}) EXPECT_GT(report["latency_ms"][key].get<double>(), 0) << key;
  EXPECT_GT(report["throughput_fps"].get<double>(), 0);
}

std::string write_plan(const test::TempDir& dir, const json& plan) {
  static int written = 0;  // a file per plan: a test may hold several in one folder
  std::string path = dir.path("plan" + std::to_string(++written) + ".json");
  std::ofstream(path) << plan.dump(1);
  return path;
}

// Every stage mode in one VGG-style plan, with uneven fractions.
json every_mode_plan() {
  return {{"ranks", 4},
               {"stages",
                {{{"layers", {"c1", "c1"}}, {"mode", "single"}, {"ranks", {0}}},
                 {{"layers", {"c2", "p1"}}, {"mode", "split-output"}, {"ranks", {1, 2, 3}}, {"fractions", {0.5, 0.3, 0.2}}},
                 {{"layers", {"c3", "p2"}}, {"mode", "split-spatial"}, {"ranks", {0, 3}}, {"fractions", {0.7, 0.3}}},
                 {{"layers", {"flat", "fc1"}}, {"mode", "split-input"}, {"ranks", {2, 1}}, {"fractions", {0.25, 0.75}}},
                 {{"layers", {"fc2", "fc2"}}, {"mode", "replicate"}, {"ranks", {1, 2, 3}}, {"fractions", {0.6, 0.2, 0.2}}}}}};
}

// Convolutions split by output (uneven), each taking the slices of the one before as they arrive
// (plan::gather_overlaps_next): c1 into c2, which keeps its slice for p1; p1's slices into c3; c3
// into c4, which keeps its slice for p2.
json gathered_into_convolutions_plan() {
  return {{"ranks", 3},
          {"stages",
           {{{"layers", {"c1", "p2"}}, {"mode", "split-output"}, {"ranks", {2, 0, 1}}, {"fractions", {0.5, 0.3, 0.2}}},
            {{"layers", {"flat", "fc2"}}, {"mode", "single"}, {"ranks", {1}}}}}};
}

// VGG16's latency plan in small: bands, then the dense layer after the flatten split by input,
// each member sent only its slice of the flattened bands (uneven), then the classifier.
json sliced_tail_plan() {
  return {
      {"ranks", 3},
      {"stages",
       {{{"layers", {"c1", "p2"}}, {"mode", "split-spatial"}, {"ranks", {0, 1, 2}}},
        {{"layers", {"flat", "fc1"}}, {"mode", "split-input"}, {"ranks", {1, 2, 0}}, {"fractions", {0.5, 0.2, 0.3}}},
        {{"layers", {"fc2", "fc2"}}, {"mode", "single"}, {"ranks", {2}}}}}};
}

// Replicas, then a split-input stage whose dense layers reduce-scatter: fc1's sums go to each
// member as its slice of fc2's input, fc2's to member 0 (uneven).
json scattered_tail_plan() {
  return {
      {"ranks", 4},
      {"stages",
       {{{"layers", {"c1", "c4"}}, {"mode", "replicate"}, {"ranks", {0, 3}}, {"fractions", {0.6, 0.4}}},
        {{"layers", {"p2", "fc2"}}, {"mode", "split-input"}, {"ranks", {2, 1, 3}}, {"fractions", {0.5, 0.3, 0.2}}}}}};
}

// The same after an ONNX Flatten, which reorders the feature map into (c, h, w) order: each
// member is sent the channels its features fall in.
json reordered_sliced_tail_plan() {
  return {{"ranks", 3},
          {"stages",
           {{{"layers", {"/c/Conv", "/c/Conv"}}, {"mode", "single"}, {"ranks", {0}}},
            {{"layers", {"/Reshape", "/fc/Gemm"}},
             {"mode", "split-input"},
             {"ranks", {2, 1}},
             {"fractions", {0.4, 0.6}}}}}};
}

// Split-spatial stages cut into groups whose members swap halo rows between them (uneven
// fractions, the same ranks again in the next stage), for images and for clips.
json band_groups_plan() {
  return {{"ranks", 3},
          {"stages",
           {{{"layers", {"c1", "c4"}},
             {"mode", "split-spatial"},
             {"ranks", {0, 1, 2}},
             {"fractions", {0.5, 0.3, 0.2}},
             {"exchange_after", {"c1", "p1"}}},
            {{"layers", {"p2", "fc2"}}, {"mode", "split-output"}, {"ranks", {2, 0, 1}}}}}};
}
json clip_band_groups_plan() {
  return {{"ranks", 3},
          {"stages",
           {{{"layers", {"c1", "p2"}}, {"mode", "split-spatial"}, {"ranks", {1, 2, 0}}, {"exchange_after", {"c1", "c2"}}},
            {{"layers", {"flat", "fc2"}}, {"mode", "single"}, {"ranks", {1}}}}}};
}

// Row bands through residual blocks: the first group holds the stem and block a (the add reads
// the stem's rows), the second block b, whose 1x1 shortcut reads a crop of the group's input
// and whose concatenation a crop of b1's rows; uneven fractions, then replicas.
json residual_bands_plan() {
  return {{"ranks", 3},
          {"stages",
           {{{"layers", {"stem", "cat"}},
             {"mode", "split-spatial"},
             {"ranks", {2, 0, 1}},
             {"fractions", {0.5, 0.3, 0.2}},
             {"exchange_after", {"add1"}}},
            {{"layers", {"gap", "out"}}, {"mode", "replicate"}, {"ranks", {1, 2}}}}}};
}

// The same bands ending in the global pooling: each member pools its own rows and sends member
// 0 (rank 1) its 48 channels' sums instead of its rows; the classifier on another rank.
json residual_pooled_bands_plan() {
  json plan = residual_bands_plan();
  plan["stages"][0]["layers"] = {"stem", "gap"};
  plan["stages"][0]["ranks"] = {1, 2, 0};
  plan["stages"][0]["fractions"] = {0.2, 0.5, 0.3};
  plan["stages"][1] = {{"layers", {"out", "out"}}, {"mode", "single"}, {"ranks", {2}}};
  return plan;
}

// The residual trunk in a 2x2 grid of tiles with uneven fractions: each member is sent its
// tile and their halo, and swaps rows, columns and corners with its neighbours after add1.
json residual_tiles_plan() {
  json plan = residual_bands_plan();
  plan["ranks"] = 5;
  plan["stages"][0]["ranks"] = {3, 0, 4, 1};
  plan["stages"][0]["fractions"] = {0.3, 0.2, 0.3, 0.2};
  plan["stages"][0]["columns"] = 2;
  plan["stages"][1]["ranks"] = {2, 1};
  return plan;
}
// The same grid ending in the global pooling; and vgg_small's convolutions in a 1x3 grid
// (columns only), with two halo swaps.
json residual_pooled_tiles_plan() {
  json plan = residual_tiles_plan();
  plan["stages"][0]["layers"] = {"stem", "gap"};
  plan["stages"][1] = {{"layers", {"out", "out"}}, {"mode", "single"}, {"ranks", {2}}};
  return plan;
}
json column_tiles_plan() {
  json plan = band_groups_plan();
  plan["stages"][0]["columns"] = 3;
  return plan;
}
// Clips of images through 3-D layers in a 2x2 grid: the same rows and columns of every image.
json clip_tiles_plan() {
  json plan = clip_band_groups_plan();
  plan["ranks"] = 4;
  plan["stages"][0]["ranks"] = {1, 2, 0, 3};
  plan["stages"][0]["columns"] = 2;
  return plan;
}

// A residual model cut inside its blocks (a skip value crosses two cuts), rank 0 computing
// nothing, the sink on rank 2.
json residual_cut_plan() {
  return {{"ranks", 4},
               {"source", 0},
               {"sink", 2},
               {"stages",
                {{{"layers", {"stem", "a1"}}, {"mode", "replicate"}, {"ranks", {1, 3}}},
                 {{"layers", {"a2", "b1"}}, {"mode", "split-output"}, {"ranks", {2, 3}}},
                 {{"layers", {"b_short", "b_short"}}, {"mode", "single"}, {"ranks", {1}}},
                 {{"layers", {"b2", "out"}}, {"mode", "single"}, {"ranks", {3}}}}}};
}

// Coded redundancy: a convolution with a parity member feeding replicas, the dense tail (a
// pooling and a flatten every member computes whole) with uneven slices and a parity, and the
// softmax classifier split in one slice and its parity, into the sink.
json parity_plan() {
  return {{"ranks", 6},
          {"stages",
           {{{"layers", {"c1", "c1"}}, {"mode", "single"}, {"ranks", {0}}},
            {{"layers", {"c2", "c2"}}, {"mode", "split-output"}, {"ranks", {1, 2, 3}}, {"fractions", {0.7, 0.3}}, {"parity", 1}},
            {{"layers", {"p1", "c4"}}, {"mode", "replicate"}, {"ranks", {4, 0}}},
            {{"layers", {"p2", "fc1"}}, {"mode", "split-output"}, {"ranks", {1, 2, 3}}, {"fractions", {0.6, 0.4}}, {"parity", 1}},
            {{"layers", {"fc2", "fc2"}}, {"mode", "split-output"}, {"ranks", {4, 5}}, {"parity", 1}}}}};
}

struct StrategyCase {
  const char* model;
  const char* strategy;
  int ranks;
};

class Strategies : public testing::TestWithParam<StrategyCase> {};

}  // namespace

TEST_P(Strategies, DistributedEqualsOneProcess) {
  const auto& c = GetParam();
  expect_same_as_one_process(c.model, c.ranks, std::string("--strategy ") + c.strategy);
}

INSTANTIATE_TEST_SUITE_P(
    Mpi, Strategies,
    testing::Values(StrategyCase{"lenet5", "pipeline", 2}, StrategyCase{"lenet5", "pipeline", 4},
                    StrategyCase{"lenet5", "replicate", 9}, StrategyCase{"lenet5", "split-output", 3},
                    StrategyCase{"lenet5", "split-input", 2}, StrategyCase{"lenet5", "split-spatial", 4},
                    StrategyCase{"vgg_small", "pipeline", 9}, StrategyCase{"vgg_small", "replicate", 3},
                    StrategyCase{"vgg_small", "split-output", 4}, StrategyCase{"vgg_small", "split-output", 9},
                    StrategyCase{"vgg_small", "split-input", 3}, StrategyCase{"vgg_small", "split-spatial", 2},
                    StrategyCase{"clip", "split-tensor", 2},
                    StrategyCase{"vgg_small", "split-spatial", 9}, StrategyCase{"residual", "pipeline", 3},
                    StrategyCase{"residual", "pipeline", 9}, StrategyCase{"residual", "replicate", 2},
                    StrategyCase{"residual", "split-output", 4}, StrategyCase{"residual", "split-input", 3},
                    StrategyCase{"residual", "split-spatial", 3}, StrategyCase{"mobilenetv2_64", "pipeline", 4},
                    StrategyCase{"mobilenetv2_64", "split-output", 3},
                    StrategyCase{"mobilenetv2_64", "split-spatial", 2}, StrategyCase{"dense_heavy", "split-input", 4},
                    StrategyCase{"dense_heavy", "split-output", 9}, StrategyCase{"dense_heavy", "pipeline", 3},
                    StrategyCase{"onnx_conv_variants", "pipeline", 2},
                    StrategyCase{"onnx_conv_variants", "split-output", 2},
                    StrategyCase{"onnx_activations_op13", "pipeline", 2}, StrategyCase{"residual_keras", "pipeline", 3},
                    StrategyCase{"residual_keras", "split-output", 3}, StrategyCase{"residual_keras", "split-input", 2},
                    StrategyCase{"transfer_keras", "split-output", 3}, StrategyCase{"transfer_keras", "pipeline", 3},
                    StrategyCase{"transfer_keras", "split-spatial", 3}, StrategyCase{"shared", "pipeline", 3},
                    StrategyCase{"shared", "split-output", 2}, StrategyCase{"shared", "replicate", 2},
                    StrategyCase{"multi_io", "pipeline", 1}, StrategyCase{"multi_io", "pipeline", 3},
                    StrategyCase{"multi_io", "pipeline", 9}, StrategyCase{"multi_io", "replicate", 2},
                    StrategyCase{"multi_io", "split-output", 3}, StrategyCase{"multi_io", "split-input", 2},
                    StrategyCase{"multi_io", "split-spatial", 2}, StrategyCase{"multi_io_keras", "pipeline", 4},
                    StrategyCase{"onnx_multi_io", "pipeline", 3}, StrategyCase{"onnx_multi_io", "split-output", 2},
                    StrategyCase{"efficientnet_keras", "pipeline", 3},
                    StrategyCase{"efficientnet_keras", "split-output", 3},
                    StrategyCase{"efficientnet_keras", "split-spatial", 3},
                    // Transformers: pipelines across blocks, replicas, heads and MLP pairs split.
                    StrategyCase{"onnx_vit_tiny_op14", "pipeline", 3}, StrategyCase{"onnx_vit_tiny_op14", "replicate", 2},
                    StrategyCase{"onnx_vit_tiny_op14", "split-tensor", 2},
                    StrategyCase{"onnx_vit_tiny_op14", "split-tensor", 3},
                    StrategyCase{"onnx_vit_tiny_op17", "split-tensor", 4},
                    StrategyCase{"onnx_text_encoder", "pipeline", 2}, StrategyCase{"onnx_text_encoder", "split-tensor", 3},
                    StrategyCase{"vgg_small", "split-tensor", 3}, StrategyCase{"dense_heavy", "split-tensor", 4},
                    // Clips (3-D layers): stages, replicas, output and input channels, row bands.
                    StrategyCase{"clip", "pipeline", 3}, StrategyCase{"clip", "replicate", 2},
                    StrategyCase{"clip", "split-output", 3}, StrategyCase{"clip", "split-input", 2},
                    StrategyCase{"clip", "split-spatial", 2}, StrategyCase{"clip", "split-spatial", 3},
                    StrategyCase{"clip_first", "split-spatial", 3}, StrategyCase{"onnx_clip_net", "split-spatial", 2},
                    StrategyCase{"clip_first", "pipeline", 2}, StrategyCase{"clip_first", "split-output", 2},
                    StrategyCase{"onnx_clip_net", "pipeline", 3}, StrategyCase{"onnx_clip_net", "split-output", 2}),
    [](const testing::TestParamInfo<StrategyCase>& info) {
      std::string name = std::string(info.param.model) + "_" + info.param.strategy + "_" + std::to_string(info.param.ranks);
      for (char& ch : name)
        if (!isalnum(static_cast<unsigned char>(ch))) ch = '_';
      return name;
    });

// Ranks with a pool of compute threads each (layer parts and row bands split again inside a
// rank) give the same outputs.
TEST(ComputeThreads, RanksWithTwoThreadsEqualOneProcess) {
  expect_same_as_one_process("mobilenetv2_64", 2, "--strategy split-spatial --threads 2");
  expect_same_as_one_process("vgg_small", 3, "--strategy split-output --threads 2");
  expect_same_as_one_process("residual", 2, "--strategy pipeline --threads 3");
}

TEST(MixedPlans, EveryModeInOnePlanWithUnevenFractions) {
  test::TempDir dir;
  expect_same_as_one_process("vgg_small", 4, "--plan " + write_plan(dir, every_mode_plan()));
  expect_same_as_one_process("vgg_small", 3, "--plan " + write_plan(dir, sliced_tail_plan()));
  expect_same_as_one_process("vgg_small", 4, "--plan " + write_plan(dir, scattered_tail_plan()));
  expect_same_as_one_process("vgg_small", 3, "--plan " + write_plan(dir, gathered_into_convolutions_plan()));
  expect_same_as_one_process("onnx_view_flatten", 3, "--plan " + write_plan(dir, reordered_sliced_tail_plan()));
}

// A layer called at two places holds one set of weights on a rank that runs both calls: the
// rank reads and counts it once (c: 3x3x6x6 + 6 floats; d: 6x6 + 6).
TEST(SharedLayers, ARankRunningBothCallsHoldsTheWeightsOnce) {
  test::TempDir dir;
  const json plan = {{"ranks", 2},
                     {"stages",
                      {{{"layers", {"c", "gap"}}, {"mode", "single"}, {"ranks", {0}}},
                       {{"layers", {"d", "d_call1"}}, {"mode", "single"}, {"ranks", {1}}}}}};
  auto r = mpirun(2, Models::get().path("shared"), "--plan " + write_plan(dir, plan), "--report " + dir.path("r.json"));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const json report = json::parse(std::ifstream(dir.path("r.json")));
  ASSERT_EQ(report["ranks"].size(), 2u);
  EXPECT_EQ(report["ranks"][0]["weight_bytes"], (3 * 3 * 6 * 6 + 6) * sizeof(float));
  EXPECT_EQ(report["ranks"][1]["weight_bytes"], (6 * 6 + 6) * sizeof(float));
  // Split by output over two ranks, each call alike: each rank holds one half of each layer.
  const json split = {{"ranks", 2},
                      {"stages", {{{"layers", {"c", "d_call1"}}, {"mode", "split-output"}, {"ranks", {0, 1}}}}}};
  auto s =
      mpirun(2, Models::get().path("shared"), "--plan " + write_plan(dir, split), "--report " + dir.path("s.json"));
  ASSERT_EQ(s.exit_code, 0) << s.output;
  const json halves = json::parse(std::ifstream(dir.path("s.json")));
  for (int rank : {0, 1})
    EXPECT_EQ(halves["ranks"][rank]["weight_bytes"], ((3 * 3 * 6 + 1) * 3 + (6 + 1) * 3) * sizeof(float)) << rank;
  expect_same_as_one_process("shared", 2, "--plan " + write_plan(dir, split));
}

// The same for a depthwise convolution: both calls split by channels alike take one part, so
// each rank holds 3 of the 6 channels' kernels once, and 2 of the dense layer's 4 units.
TEST(SharedLayers, ADepthwiseLayerSplitAlikeInBothCallsHoldsOnePart) {
  test::TempDir dir;
  const json split = {{"ranks", 2},
                      {"stages", {{{"layers", {"dw", "out"}}, {"mode", "split-output"}, {"ranks", {0, 1}}}}}};
  auto s =
      mpirun(2, Models::get().path("shared_dw"), "--plan " + write_plan(dir, split), "--report " + dir.path("s.json"));
  ASSERT_EQ(s.exit_code, 0) << s.output;
  const json halves = json::parse(std::ifstream(dir.path("s.json")));
  for (int rank : {0, 1})
    EXPECT_EQ(halves["ranks"][rank]["weight_bytes"], ((3 * 3 + 1) * 3 + (6 + 1) * 2) * sizeof(float)) << rank;
  expect_same_as_one_process("shared_dw", 2, "--plan " + write_plan(dir, split));
}

// And for attention split by heads: each rank holds one of the 2 heads once for both calls.
TEST(SharedLayers, AnAttentionLayerSplitByHeadsInBothCallsHoldsOnePart) {
  test::TempDir dir;
  const json plan = {{"ranks", 2},
                     {"stages",
                      {{{"layers", {"patches", "tokens"}}, {"mode", "single"}, {"ranks", {0}}},
                       {{"layers", {"mha", "mha_call1"}}, {"mode", "split-tensor"}, {"ranks", {0, 1}}},
                       {{"layers", {"add", "head"}}, {"mode", "single"}, {"ranks", {1}}}}}};
  auto s =
      mpirun(2, Models::get().path("shared_mha"), "--plan " + write_plan(dir, plan), "--report " + dir.path("s.json"));
  ASSERT_EQ(s.exit_code, 0) << s.output;
  const json report = json::parse(std::ifstream(dir.path("s.json")));
  // One head: query, key and value kernels 8 x 4 and biases 4, its 4 x 8 rows of the output
  // kernel, and the output bias.
  const std::size_t head = 3 * (8 * 4 + 4) + 4 * 8 + 8;
  EXPECT_EQ(report["ranks"][0]["weight_bytes"], (2 * 2 * 3 * 8 + 8 + head) * sizeof(float));
  EXPECT_EQ(report["ranks"][1]["weight_bytes"], (head + 8 * 3 + 3) * sizeof(float));
  expect_same_as_one_process("shared_mha", 2, "--plan " + write_plan(dir, plan));
}

TEST(MixedPlans, BandGroupsSwapHalosBetweenThem) {
  test::TempDir dir;
  expect_same_as_one_process("vgg_small", 3, "--plan " + write_plan(dir, band_groups_plan()));
  expect_same_as_one_process("clip", 3, "--plan " + write_plan(dir, clip_band_groups_plan()));
  // Nine ranks swapping after every layer, then two, then replicas; and two ranks alone.
  const json nine = {
      {"ranks", 9},
      {"stages",
       {{{"layers", {"c1", "p1"}}, {"mode", "split-spatial"}, {"ranks", {0, 1, 2, 3, 4, 5, 6, 7, 8}},
         {"exchange_after", {"c1", "c2"}}},
        {{"layers", {"c3", "c4"}}, {"mode", "split-spatial"}, {"ranks", {4, 7}}, {"fractions", {0.3, 0.7}},
         {"exchange_after", {"c3"}}},
        {{"layers", {"p2", "fc2"}}, {"mode", "replicate"}, {"ranks", {2, 3, 5}}}}}};
  expect_same_as_one_process("vgg_small", 9, "--plan " + write_plan(dir, nine));
  const json two = {{"ranks", 2},
                    {"stages",
                     {{{"layers", {"c1", "c4"}}, {"mode", "split-spatial"}, {"ranks", {1, 0}},
                       {"exchange_after", {"c1", "c2", "p1", "c3"}}},
                      {{"layers", {"p2", "fc2"}}, {"mode", "single"}, {"ranks", {1}}}}}};
  expect_same_as_one_process("vgg_small", 2, "--plan " + write_plan(dir, two));
}

TEST(MixedPlans, BandsThroughResidualBlocks) {
  test::TempDir dir;
  expect_same_as_one_process("residual", 3, "--plan " + write_plan(dir, residual_bands_plan()));
  // Even bands on 2 and 4 ranks, and the whole trunk as one band on 8 (--strategy).
  for (int ranks : {2, 4}) {
    json plan = residual_bands_plan();
    plan["ranks"] = ranks;
    plan["stages"][0]["ranks"] = json::array();
    for (int r = 0; r < ranks; ++r) plan["stages"][0]["ranks"].push_back(r);
    plan["stages"][0].erase("fractions");
    plan["stages"][1]["ranks"] = {ranks - 1};
    plan["stages"][1]["mode"] = "single";
    expect_same_as_one_process("residual", ranks, "--plan " + write_plan(dir, plan));
  }
  expect_same_as_one_process("residual", 8, "--strategy split-spatial");
  expect_same_as_one_process("residual", 3, "--plan " + write_plan(dir, residual_pooled_bands_plan()));
}

TEST(MixedPlans, TilesOfAGrid) {
  test::TempDir dir;
  struct Case {
    const char* model;
    int ranks;
    json plan;
  };
  for (const Case& c : {Case{"residual", 5, residual_tiles_plan()}, Case{"residual", 5, residual_pooled_tiles_plan()},
                        Case{"vgg_small", 3, column_tiles_plan()}, Case{"clip", 4, clip_tiles_plan()}})
    expect_same_as_one_process(c.model, c.ranks, "--plan " + write_plan(dir, c.plan));
}

// Split-spatial stages hand their tiles straight on, each member to each receiver the part of
// its tile that receiver takes (plan::hands_tiles_on): a 2x2 grid into three bands on
// other ranks (rank 3 in both), the bands into slices of the flattened vector, the slices'
// partial sums into one rank; and a last stage of tiles into the sink, which is not one of
// its members, or is.
json tiles_into_bands_plan() {
  return {{"ranks", 4},
          {"stages",
           {{{"layers", {"c1", "c2"}}, {"mode", "split-spatial"}, {"ranks", {0, 1, 2, 3}}, {"columns", 2}},
            {{"layers", {"p1", "p2"}}, {"mode", "split-spatial"}, {"ranks", {3, 1, 2}}, {"fractions", {0.4, 0.4, 0.2}}},
            {{"layers", {"flat", "fc1"}}, {"mode", "split-input"}, {"ranks", {1, 0, 2}}},
            {{"layers", {"fc2", "fc2"}}, {"mode", "single"}, {"ranks", {3}}}}}};
}
json tiles_into_sink_plan(int sink) {
  return {{"ranks", 4},
          {"sink", sink},
          {"stages",
           {{{"layers", {"c1", "c1"}}, {"mode", "split-spatial"}, {"ranks", {1, 2}}, {"columns", 2}},
            {{"layers", {"p1", "c2"}}, {"mode", "split-spatial"}, {"ranks", {2, 0, 3}}, {"columns", 3}}}}};
}

TEST(MixedPlans, TilesHandedStraightOn) {
  test::TempDir dir;
  expect_same_as_one_process("vgg_small", 4, "--plan " + write_plan(dir, tiles_into_bands_plan()));
  expect_same_as_one_process("vgg_small", 4,
                             "--plan " + write_plan(dir, tiles_into_bands_plan()) + " --max-in-flight 1");
  expect_same_as_one_process("conv_only", 4, "--plan " + write_plan(dir, tiles_into_sink_plan(1)));
  expect_same_as_one_process("conv_only", 4, "--plan " + write_plan(dir, tiles_into_sink_plan(3)));
}

TEST(MixedPlans, ResidualCutInsideBlocksWithSourceAndSinkElsewhere) {
  // The skip value of block b crosses two cuts; rank 0 computes nothing; sink is rank 2.
  test::TempDir dir;
  expect_same_as_one_process("residual", 4, "--plan " + write_plan(dir, residual_cut_plan()));
}

TEST(MixedPlans, MobileNetDepthwiseSplitsAndReplicas) {
  test::TempDir dir;
  json plan = {{"ranks", 3},
               {"stages",
                {{{"layers", {"Conv1", "expanded_conv_project"}}, {"mode", "split-output"}, {"ranks", {0, 1, 2}}},
                 {{"layers", {"block_1_expand", "block_5_add"}}, {"mode", "replicate"}, {"ranks", {1, 2}}},
                 {{"layers", {"block_6_expand", "predictions"}}, {"mode", "single"}, {"ranks", {0}}}}}};
  expect_same_as_one_process("mobilenetv2_64", 3, "--plan " + write_plan(dir, plan));
}

// Parity stages one after another on the same ranks, each consuming the one before (its own
// slice taken locally), the last into the sink, which computes a slice too.
json chained_parity_plan() {
  return {{"ranks", 4},
          {"stages",
           {{{"layers", {"c1", "p2"}}, {"mode", "single"}, {"ranks", {0}}},
            {{"layers", {"flat", "fc1"}}, {"mode", "split-output"}, {"ranks", {1, 2, 3}}, {"parity", 1}},
            {{"layers", {"fc2", "fc2"}}, {"mode", "split-output"}, {"ranks", {0, 1, 2, 3}}, {"fractions", {0.3, 0.3, 0.4}}, {"parity", 1}}}}};
}

TEST(MixedPlans, ParityStagesEqualOneProcess) {
  test::TempDir dir;
  expect_same_as_one_process("vgg_small", 6, "--plan " + write_plan(dir, parity_plan()));
  expect_same_as_one_process("vgg_small", 6, "--plan " + write_plan(dir, parity_plan()) + " --max-in-flight 1");
  expect_same_as_one_process("vgg_small", 4, "--plan " + write_plan(dir, chained_parity_plan()));
  expect_same_as_one_process("vgg_small", 4, "--plan " + write_plan(dir, chained_parity_plan()) + " --max-in-flight 1");
}

namespace {
void expect_plan_error(const json& plan, int ranks, const std::string& message) {
  test::TempDir dir;
  auto r = mpirun(ranks, Models::get().path("vgg_small"), "--plan " + write_plan(dir, plan), "");
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_NE(r.output.find(message), std::string::npos) << r.output;
  // Rank 0 says it once; the other ranks agree silently.
  std::size_t count = 0;
  for (std::size_t at = r.output.find("chorus: error"); at != std::string::npos; at = r.output.find("chorus: error", at + 1))
    ++count;
  EXPECT_EQ(count, 1u) << r.output;
}
json two_stage(const std::string& a_last, const std::string& b_first) {
  return {{"ranks", 2},
          {"stages",
           {{{"layers", {"c1", a_last}}, {"ranks", {0}}}, {{"layers", {b_first, "fc2"}}, {"ranks", {1}}}}}};
}
}  // namespace

TEST(BadPlans, UnknownLayer) { expect_plan_error(two_stage("c9", "p1"), 2, "unknown layer 'c9'"); }
TEST(BadPlans, Overlap) { expect_plan_error(two_stage("c2", "c2"), 2, "overlaps the previous stage"); }
TEST(BadPlans, Gap) { expect_plan_error(two_stage("c2", "c3"), 2, "leaves a gap: layers 'p1'"); }
TEST(BadPlans, RankCountDiffers) { expect_plan_error(two_stage("c2", "p1"), 3, "made for 2 rank(s) but the job has 3"); }
TEST(BadPlans, SplitOnUnsplittableLayer) {
  json plan = {{"ranks", 2},
               {"stages", {{{"layers", {"c1", "fc2"}}, {"mode", "split-spatial"}, {"ranks", {0, 1}}}}}};
  expect_plan_error(plan, 2, "layer 'flat' (Flatten) cannot be split into row bands");
}
TEST(BadPlans, ParityStageOfTwoSplitLayers) {
  json plan = {{"ranks", 3},
               {"stages", {{{"layers", {"c1", "p2"}}, {"mode", "single"}, {"ranks", {0}}},
                           {{"layers", {"flat", "fc2"}}, {"mode", "split-output"}, {"ranks", {1, 0, 2}}, {"parity", 1}}}}};
  expect_plan_error(plan, 3, "with parity only the stage's last layer may be split; 'fc1' is split too");
}
TEST(BadPlans, FractionsDoNotSumToOne) {
  json plan = {{"ranks", 2},
               {"stages", {{{"layers", {"c1", "fc2"}}, {"mode", "split-output"}, {"ranks", {0, 1}}, {"fractions", {0.5, 0.6}}}}}};
  expect_plan_error(plan, 2, "fractions sum to 1.1");
}

// The steady state of `chorus run` allocates nothing in any mode: after the warm-up, page faults
// per frame are a small fraction of the first frame's, and with the allocation counter
// preloaded (tests/support/count_allocations.cpp) no frame allocates from the heap.
namespace {

// Enough frames for the warm-up (the plan's frames in flight: about 60 for MobileNetV2's
// split-spatial plan) and a steady state after it.
constexpr int kSteadyFrames = 160;

struct SteadyCase {
  const char* name;
  const char* model;
  int ranks;  // 1: without mpiexec
  const char* how;
  bool emulate = false;
};

class SteadyState : public testing::TestWithParam<SteadyCase> {};

// kSteadyFrames images for the "images" case, named so that they sort in frame order: PNGs and
// JPEGs (both decoders, zlib's growing buffers among them), resized to the model's 32 x 32 or
// already of that size.
std::string write_steady_images(const test::TempDir& dir) {
  const std::string images = dir.path("images");
  std::filesystem::create_directory(images);
  Rng rng(17);
  for (int i = 0; i < kSteadyFrames; ++i) {
    const int w = i % 3 == 0 ? 32 : 48, h = i % 3 == 0 ? 32 : 40;
    std::vector<unsigned char> pixels(static_cast<std::size_t>(w) * h * 3);
    for (auto& p : pixels) p = static_cast<unsigned char>(rng.uniform() * 255);
    char name[32];
    std::snprintf(name, sizeof name, "/%03d.%s", i, i % 2 ? "png" : "jpg");
    const std::string path = images + name;
    const int ok = i % 2 ? stbi_write_png(path.c_str(), w, h, 3, pixels.data(), w * 3)
                         : stbi_write_jpg(path.c_str(), w, h, 3, pixels.data(), 90);
    EXPECT_NE(ok, 0) << path;
  }
  return images;
}

// kSteadyFrames frames of H.264 at 48 x 40 (resized to the model's 32 x 32) for the "video" case.
std::string write_steady_video(const test::TempDir& dir) {
  const std::string video = dir.path("steady.mp4");
  const auto r = test::run_command("ffmpeg -v error -y -f lavfi -i testsrc2=size=48x40:rate=30 -frames:v " +
                                   std::to_string(kSteadyFrames) + " -c:v libx264 -pix_fmt yuv420p " + video);
  EXPECT_EQ(r.exit_code, 0) << "scripts/install_deps.sh installs Debian's ffmpeg program\n" << r.output;
  return video;
}

// Runs the case and returns its report (null on failure). `preload`: the allocation counter.
json run_steady(const SteadyCase& c, bool preload, const test::TempDir& dir) {
  std::string extra;
  if (c.emulate) {
    // A device a little slower than this host and fast links: the pacing and the delayed
    // messages run, and the test stays short.
    json cluster = {
        {"name", "steady"},
        {"network", {{"bandwidth_mbps", 1000.0}, {"latency_ms", 0.5}, {"shared", true}}},
        {"device_classes",
         {{"dev", {{"memory_mb", 1024}, {"profile", {{"device", "dev"}, {"macs_per_second", {{"default", 2e9}}}}}}}}},
        {"hosts", json::array()}};
    for (int r = 0; r < c.ranks; ++r) cluster["hosts"].push_back({{"name", "d" + std::to_string(r)}, {"class", "dev"}});
    std::ofstream(dir.path("cluster.json")) << cluster.dump();
    extra = " --emulate " + dir.path("cluster.json");
  }
  // "band-groups": the split-spatial stage in groups that swap halos (band_groups_plan); "parity":
  // parity stages (parity_plan); "tiles-handed", "tiles-to-sink": tiles handed straight on
  // (tiles_into_bands_plan, tiles_into_sink_plan); "images": a directory of images in, a file of outputs out;
  // "video": an H.264 video in (made with Debian's ffmpeg program).
  const std::string how = std::string(c.how) == "band-groups"     ? "--plan " + write_plan(dir, band_groups_plan())
                          : std::string(c.how) == "parity"        ? "--plan " + write_plan(dir, parity_plan())
                          : std::string(c.how) == "tiles-handed"  ? "--plan " + write_plan(dir, tiles_into_bands_plan())
                          : std::string(c.how) == "tiles-to-sink" ? "--plan " + write_plan(dir, tiles_into_sink_plan(3))
                          : std::string(c.how) == "images"
                              ? "--input " + write_steady_images(dir) + " --output " + dir.path("out.npy")
                          : std::string(c.how) == "video" ? "--input " + write_steady_video(dir)
                                                          : c.how;
  const bool from_files = std::string(c.how) == "images" || std::string(c.how) == "video";
  const std::string input = from_files ? std::string() : " --synthetic " + std::to_string(kSteadyFrames);
  const std::string args = std::string(" run ") + Models::get().path(c.model) + input + " --quiet " + how + extra +
                           " --report " + dir.path("report.json");
  const std::string counter = preload ? std::string(CHORUS_ALLOCATION_COUNTER) : "";
  std::string command;
  if (c.ranks == 1)
    command =
        "timeout -k 5 120 " + (preload ? "env LD_PRELOAD=" + counter + " " : std::string()) + CHORUS_BINARY + args;
  else
    command = "timeout -k 5 120 mpiexec --oversubscribe -np " + std::to_string(c.ranks) +
              (preload ? " -x LD_PRELOAD=" + counter : std::string()) + " " CHORUS_BINARY + args;
  auto r = test::run_command(command);
  EXPECT_EQ(r.exit_code, 0) << command << "\n" << r.output;
  if (r.exit_code != 0) return nullptr;
  return json::parse(std::ifstream(dir.path("report.json")));
}

}  // namespace

TEST_P(SteadyState, PageFaultsPerFrameNearZero) {
  test::TempDir dir;
  const json report = run_steady(GetParam(), false, dir);
  ASSERT_FALSE(report.is_null());
  for (const auto& rank : report["ranks"]) {
    SCOPED_TRACE("rank " + rank["rank"].dump() + " (" + rank["layers"].get<std::string>() + ")");
    if (rank["frames"].get<int>() == 0 && rank["steady_frames"].get<int>() == 0) continue;  // a rank with no role
    ASSERT_GE(rank["steady_frames"].get<int>(), 5);
    const double first = rank["first_frame_minor_faults"], steady = rank["minor_faults_per_frame"];
    EXPECT_GT(first, 0);
    // 1 % of the first frame's, or one fault per frame where the first frame took few.
    EXPECT_LE(steady, std::max(1.0, 0.01 * first)) << "first frame " << first;
    // A major fault reads a page from disk: a library's code page first run in the steady state
    // (a video decoder's path for a later kind of frame) on a machine whose page cache does not
    // hold it yet, not a buffer a frame allocates. One in the run is the page cache's, not ours
    // (seen once, on a fresh clone: 1 in 95 frames); more would be a frame's doing.
    EXPECT_LT(rank["major_faults_per_frame"].get<double>() * rank["steady_frames"].get<double>(), 1.5);  // at most one
  }
}

TEST_P(SteadyState, NoHeapAllocationsPerFrame) {
  test::TempDir dir;
  const json report = run_steady(GetParam(), true, dir);
  ASSERT_FALSE(report.is_null());
  for (const auto& rank : report["ranks"]) {
    SCOPED_TRACE("rank " + rank["rank"].dump() + " (" + rank["layers"].get<std::string>() + ")");
    if (rank["frames"].get<int>() == 0 && rank["steady_frames"].get<int>() == 0) continue;
    // The counter was found (a report without it says -1), and frames allocated in warm-up.
    EXPECT_GT(rank["first_frame_heap_allocations"].get<double>(), 0);
    EXPECT_EQ(rank["heap_allocations_per_frame"].get<double>(), 0.0);
    // What still allocates is Open MPI: its fragment free lists (opal_free_list_grow_st under
    // MPI_Isend and the shared-memory transport) grow now and then, never once a frame. One
    // growth is a chunk of a dozen or so allocations, and a rank that falls behind on a loaded
    // machine (six ranks on two cores here) may see two in the steady state: 13 over 119
    // frames was seen in CI, where a bound of 0.1 per frame failed.
    if (GetParam().ranks > 1) {
      EXPECT_LE(rank["mpi_heap_allocations_per_frame"].get<double>(), 0.25);
    }
    // A video's decoder allocates, counted apart: FFmpeg's references to the buffers it hands
    // on. Reported, not bounded here (it is FFmpeg's to change).
    if (std::string(GetParam().how) == "video" && rank["rank"] == 0)
      std::cout << "FFmpeg's own heap allocations per steady frame: "
                << rank["ffmpeg_heap_allocations_per_frame"].get<double>() << "\n";
  }
}

INSTANTIATE_TEST_SUITE_P(
    Modes, SteadyState,
    testing::Values(SteadyCase{"one_rank", "mobilenetv2_64", 1, ""},
                    SteadyCase{"one_rank_emulated", "residual", 1, "", true},
                    SteadyCase{"pipeline", "residual", 3, "--strategy pipeline"},
                    SteadyCase{"pipeline_emulated", "residual", 3, "--strategy pipeline", true},
                    SteadyCase{"replicate", "vgg_small", 3, "--strategy replicate"},
                    SteadyCase{"split_output", "mobilenetv2_64", 2, "--strategy split-output"},
                    SteadyCase{"split_output_emulated", "vgg_small", 2, "--strategy split-output", true},
                    SteadyCase{"split_input", "dense_heavy", 2, "--strategy split-input"},
                    SteadyCase{"parity", "vgg_small", 6, "parity"},
                    SteadyCase{"split_spatial", "mobilenetv2_64", 2, "--strategy split-spatial"},
                    SteadyCase{"band_groups", "vgg_small", 3, "band-groups"},
                    SteadyCase{"tiles_handed", "vgg_small", 4, "tiles-handed"},
                    SteadyCase{"tiles_to_sink", "conv_only", 4, "tiles-to-sink"},
                    SteadyCase{"threads", "mobilenetv2_64", 1, "--threads 2"},
                    // A directory of images in, a file of outputs out; a video in (FFmpeg's
                    // own allocations are counted apart).
                    SteadyCase{"images", "vgg_small", 1, "images"}, SteadyCase{"video", "vgg_small", 1, "video"},
                    // A camera's path: the real-time feed (its capture
                    // thread and queue) and a results line per frame.
                    SteadyCase{"realtime_results", "vgg_small", 1,
                               "--realtime --fps 2000 --drop none --results /dev/null --top 3"},
                    SteadyCase{"realtime_results_pipeline", "vgg_small", 3,
                               "--strategy pipeline --realtime --fps 2000 --drop none "
                               "--results /dev/null --top 3"},
                    SteadyCase{"transformer_one_rank", "onnx_vit_tiny_op14", 1, "--threads 2"},
                    SteadyCase{"split_tensor", "onnx_vit_tiny_op14", 3, "--strategy split-tensor"}),
    [](const testing::TestParamInfo<SteadyCase>& info) { return std::string(info.param.name); });

// Frame times are put on rank 0's clock with offsets estimated at start-up: with the sink's
// clock set 5 s ahead (as another host's may be), the estimate finds it and latencies stay
// those of one clock.
TEST(Clocks, OffsetsAreEstimatedAndLatenciesCorrected) {
  test::TempDir dir;
  setenv("CHORUS_TEST_CLOCK_SKEW", "2:5.0,1:-0.25", 1);
  json plan = {{"ranks", 3},
               {"source", 0},
               {"sink", 2},
               {"stages", {{{"layers", {"c1", "p1"}}, {"ranks", {0}}}, {{"layers", {"c3", "fc2"}}, {"ranks", {1}}}}}};
  auto r = mpirun(3, Models::get().path("vgg_small"), "--plan " + write_plan(dir, plan), "--report " + dir.path("r.json"));
  unsetenv("CHORUS_TEST_CLOCK_SKEW");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const json report = json::parse(std::ifstream(dir.path("r.json")));
  const auto& ranks = report["ranks"];
  EXPECT_EQ(ranks[0]["clock_offset_s"].get<double>(), 0.0);
  EXPECT_NEAR(ranks[1]["clock_offset_s"].get<double>(), 0.25, 0.01);
  EXPECT_NEAR(ranks[2]["clock_offset_s"].get<double>(), -5.0, 0.01);
  for (int k = 1; k < 3; ++k) {
    EXPECT_GT(ranks[k]["clock_uncertainty_s"].get<double>(), 0.0) << k;
    EXPECT_LT(ranks[k]["clock_uncertainty_s"].get<double>(), 0.01) << k;
  }
  // Six small frames take milliseconds; uncorrected, the sink's clock would add 5 s to each.
  EXPECT_LT(report["latency_ms"]["max"].get<double>(), 1000.0);
  EXPECT_GT(report["latency_ms"]["p50"].get<double>(), 0.0);
}

// --max-in-flight caps the frames in the system: with 1, a frame starts only when the one
// before has left the sink (the report's latency is one frame's); with 2, in between. Every
// mode gives one process's outputs either way, source and sink on other ranks included.
TEST(MaxInFlight, OneFrameAtATimeInEveryMode) {
  struct Case {
    const char* model;
    std::string how;
    int ranks;
  };
  test::TempDir plans;
  const std::string mixed = "--plan " + write_plan(plans, residual_cut_plan());
  for (const Case& c : {Case{"lenet5", "--strategy pipeline", 3}, Case{"vgg_small", "--strategy replicate", 3},
                        Case{"vgg_small", "--strategy split-output", 3}, Case{"vgg_small", "--strategy split-spatial", 2},
                        Case{"residual", mixed, 4}, Case{"multi_io", "--strategy pipeline", 4}}) {
    for (int n : {1, 2}) {
      SCOPED_TRACE(std::string(c.model) + " " + c.how + " --max-in-flight " + std::to_string(n));
      expect_same_as_one_process(c.model, c.ranks, c.how + " --max-in-flight " + std::to_string(n));
      if (n != 1) continue;
      test::TempDir dir;
      auto r = mpirun(c.ranks, Models::get().path(c.model), c.how + " --max-in-flight 1",
                      "--report " + dir.path("r.json"));
      ASSERT_EQ(r.exit_code, 0) << r.output;
      const json report = json::parse(std::ifstream(dir.path("r.json")));
      const auto start = report["frame_start_s"].get<std::vector<double>>();
      const auto finish = report["frame_finish_s"].get<std::vector<double>>();
      ASSERT_EQ(start.size(), static_cast<std::size_t>(kFrames));
      for (int i = 1; i < kFrames; ++i) EXPECT_GE(start[i], finish[i - 1]) << "frame " << i << " started early";
    }
  }
}

// The bytes every rank sends to and receives from every peer, per frame, as measured, equal
// what the plan's traffic model says the runtime sends (partition/frame_traffic.h): for a
// spatial, a channel, a mixed and a tensor (heads and kept slices) plan, with replicas taking
// turns, source and sink elsewhere.
TEST(Traffic, MeasuredPerPeerEqualsThePlansModel) {
  test::TempDir plans;
  struct Case {
    const char* model;
    std::string how;
    int ranks;
  };
  for (const Case& c : {Case{"vgg_small", "--strategy split-spatial", 3},
                        Case{"vgg_small", "--strategy split-output", 4},
                        Case{"dense_heavy", "--strategy split-input", 3},
                        Case{"vgg_small", "--strategy split-input", 3},
                        Case{"clip", "--strategy split-input", 2},
                        Case{"vgg_small", "--plan " + write_plan(plans, every_mode_plan()), 4},
                        Case{"vgg_small", "--plan " + write_plan(plans, sliced_tail_plan()), 3},
                        Case{"vgg_small", "--plan " + write_plan(plans, scattered_tail_plan()), 4},
                        Case{"onnx_view_flatten", "--plan " + write_plan(plans, reordered_sliced_tail_plan()), 3},
                        Case{"multi_io", "--strategy pipeline", 4},
                        Case{"onnx_vit_tiny_op14", "--strategy split-tensor", 3},
                        Case{"vgg_small", "--strategy split-tensor", 3},
                        Case{"clip", "--strategy split-spatial", 3},
                        Case{"clip", "--strategy split-output", 2},
                        Case{"vgg_small", "--plan " + write_plan(plans, band_groups_plan()), 3},
                        Case{"clip", "--plan " + write_plan(plans, clip_band_groups_plan()), 3},
                        Case{"residual", "--plan " + write_plan(plans, residual_bands_plan()), 3},
                        Case{"residual", "--plan " + write_plan(plans, residual_pooled_bands_plan()), 3},
                        Case{"residual", "--plan " + write_plan(plans, residual_tiles_plan()), 5},
                        Case{"residual", "--plan " + write_plan(plans, residual_pooled_tiles_plan()), 5},
                        Case{"vgg_small", "--plan " + write_plan(plans, column_tiles_plan()), 3},
                        Case{"clip", "--plan " + write_plan(plans, clip_tiles_plan()), 4},
                        Case{"vgg_small", "--plan " + write_plan(plans, tiles_into_bands_plan()), 4},
                        Case{"conv_only", "--plan " + write_plan(plans, tiles_into_sink_plan(3)), 4},
                        Case{"vgg_small", "--plan " + write_plan(plans, parity_plan()), 6},
                        Case{"vgg_small", "--plan " + write_plan(plans, chained_parity_plan()), 4}}) {
    SCOPED_TRACE(std::string(c.model) + " " + c.how);
    test::TempDir dir;
    auto r = mpirun(c.ranks, Models::get().path(c.model), c.how, "--report " + dir.path("r.json"));
    ASSERT_EQ(r.exit_code, 0) << r.output;
    const json report = json::parse(std::ifstream(dir.path("r.json")));
    const auto predicted = report["extra"]["predicted_bytes_per_frame"].get<std::vector<std::vector<double>>>();
    ASSERT_EQ(predicted.size(), static_cast<std::size_t>(c.ranks));
    double total = 0;
    for (const auto& k : report["ranks"]) {
      const int me = k["rank"];
      const auto to = k["bytes_sent_to_per_frame"].get<std::vector<double>>();
      const auto from = k["bytes_received_from_per_frame"].get<std::vector<double>>();
      for (int peer = 0; peer < c.ranks; ++peer) {
        EXPECT_NEAR(to[peer], predicted[me][peer], 1e-6) << "rank " << me << " to " << peer;
        EXPECT_NEAR(from[peer], predicted[peer][me], 1e-6) << "rank " << me << " from " << peer;
        total += to[peer];
      }
    }
    EXPECT_GT(total, 0.0);
  }
}
