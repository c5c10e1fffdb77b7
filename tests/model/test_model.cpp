// The model graph: buffer reuse in forward, and optimiser rewrites that must not change outputs.
#include <gtest/gtest.h>

#include <algorithm>

#include "core/parallel.h"
#include "io/keras/keras_model.h"
#include "io/keras/keras_writer.h"
#include "io/model_file.h"
#include "layers/conv2d.h"
#include "model/optimize.h"
#include "reference/test_util.h"

using namespace chorus;

namespace {

// Evaluates node by node into fresh tensors, keeping every value: no reuse, no in-place.
Tensor naive_forward(const model::Model& m, const Tensor& input) {
  std::vector<Tensor> values(m.nodes().size());
  for (std::size_t n = 0; n < m.nodes().size(); ++n) {
    std::vector<const Tensor*> in;
    for (int i : m.nodes()[n].inputs) in.push_back(i == model::kModelInput ? &input : &values[i]);
    m.nodes()[n].layer->forward(in, values[n]);
  }
  return values[m.output()];
}

// A residual and inception-style DAG with every fusable pattern: conv+bn+relu, add+relu,
// concat of branches, a branch that reads the input twice, dropout, dense+softmax.
const char* kDagConfig = R"({"class_name": "Functional", "config": {"name": "dag", "layers": [
 {"class_name": "InputLayer", "name": "in", "config": {"name": "in", "batch_input_shape": [null, 12, 12, 3]}, "inbound_nodes": []},
 {"class_name": "Conv2D", "name": "c1", "config": {"name": "c1", "filters": 8, "kernel_size": [3, 3], "padding": "same", "use_bias": false}, "inbound_nodes": [[["in", 0, 0, {}]]]},
 {"class_name": "BatchNormalization", "name": "bn1", "config": {"name": "bn1", "axis": -1, "epsilon": 0.001}, "inbound_nodes": [[["c1", 0, 0, {}]]]},
 {"class_name": "Activation", "name": "r1", "config": {"name": "r1", "activation": "relu"}, "inbound_nodes": [[["bn1", 0, 0, {}]]]},
 {"class_name": "Conv2D", "name": "b1", "config": {"name": "b1", "filters": 4, "kernel_size": [1, 1], "padding": "same"}, "inbound_nodes": [[["r1", 0, 0, {}]]]},
 {"class_name": "Conv2D", "name": "b2", "config": {"name": "b2", "filters": 4, "kernel_size": [3, 3], "padding": "same"}, "inbound_nodes": [[["r1", 0, 0, {}]]]},
 {"class_name": "MaxPooling2D", "name": "b3", "config": {"name": "b3", "pool_size": [3, 3], "strides": [1, 1], "padding": "same"}, "inbound_nodes": [[["r1", 0, 0, {}]]]},
 {"class_name": "Concatenate", "name": "cat", "config": {"name": "cat", "axis": -1}, "inbound_nodes": [[["b1", 0, 0, {}], ["b2", 0, 0, {}], ["b3", 0, 0, {}]]]},
 {"class_name": "Conv2D", "name": "c2", "config": {"name": "c2", "filters": 16, "kernel_size": [3, 3], "padding": "same"}, "inbound_nodes": [[["cat", 0, 0, {}]]]},
 {"class_name": "BatchNormalization", "name": "bn2", "config": {"name": "bn2", "axis": 3}, "inbound_nodes": [[["c2", 0, 0, {}]]]},
 {"class_name": "Add", "name": "add", "config": {"name": "add"}, "inbound_nodes": [[["bn2", 0, 0, {}], ["cat", 0, 0, {}]]]},
 {"class_name": "ReLU", "name": "r2", "config": {"name": "r2", "max_value": 6.0}, "inbound_nodes": [[["add", 0, 0, {}]]]},
 {"class_name": "Multiply", "name": "sq", "config": {"name": "sq"}, "inbound_nodes": [[["r2", 0, 0, {}], ["r2", 0, 0, {}]]]},
 {"class_name": "DepthwiseConv2D", "name": "dw", "config": {"name": "dw", "kernel_size": [3, 3], "strides": [2, 2], "padding": "same", "use_bias": false}, "inbound_nodes": [[["sq", 0, 0, {}]]]},
 {"class_name": "BatchNormalization", "name": "bn3", "config": {"name": "bn3", "axis": [3], "center": false}, "inbound_nodes": [[["dw", 0, 0, {}]]]},
 {"class_name": "GlobalAveragePooling2D", "name": "gap", "config": {"name": "gap"}, "inbound_nodes": [[["bn3", 0, 0, {}]]]},
 {"class_name": "Dropout", "name": "drop", "config": {"name": "drop", "rate": 0.5}, "inbound_nodes": [[["gap", 0, 0, {}]]]},
 {"class_name": "Dense", "name": "fc", "config": {"name": "fc", "units": 5}, "inbound_nodes": [[["drop", 0, 0, {}]]]},
 {"class_name": "Softmax", "name": "sm", "config": {"name": "sm"}, "inbound_nodes": [[["fc", 0, 0, {}]]]}
], "input_layers": [["in", 0, 0]], "output_layers": [["sm", 0, 0]]}})";

// Inverted residual blocks: only e1 (26 x 64 x 160 floats, over the 256 KB a frame below which
// fusing does not pay; e2's 26 x 64 x 36 are under) runs fused with the depthwise layer after it; e3 has a second
// reader, e4 feeds a 1x1 layer, and the others are small. The fused kernel's geometry is tested in test_depthwise
// (PointwiseDepthwise).
const char* kInvertedResidualConfig = R"({"class_name": "Functional", "config": {"name": "ir", "layers": [
 {"class_name": "InputLayer", "name": "in", "config": {"name": "in", "batch_input_shape": [null, 26, 64, 8]}, "inbound_nodes": []},
 {"class_name": "Conv2D", "name": "e1", "config": {"name": "e1", "filters": 160, "kernel_size": [1, 1], "activation": "relu"}, "inbound_nodes": [[["in", 0, 0, {}]]]},
 {"class_name": "DepthwiseConv2D", "name": "d1", "config": {"name": "d1", "kernel_size": [3, 3], "padding": "same", "activation": "relu6"}, "inbound_nodes": [[["e1", 0, 0, {}]]]},
 {"class_name": "Conv2D", "name": "p1", "config": {"name": "p1", "filters": 24, "kernel_size": [1, 1]}, "inbound_nodes": [[["d1", 0, 0, {}]]]},
 {"class_name": "Conv2D", "name": "e2", "config": {"name": "e2", "filters": 36, "kernel_size": [1, 1], "activation": "relu"}, "inbound_nodes": [[["p1", 0, 0, {}]]]},
 {"class_name": "DepthwiseConv2D", "name": "d2", "config": {"name": "d2", "kernel_size": [3, 3], "strides": [2, 2], "padding": "same"}, "inbound_nodes": [[["e2", 0, 0, {}]]]},
 {"class_name": "Conv2D", "name": "e3", "config": {"name": "e3", "filters": 40, "kernel_size": [1, 1], "activation": "sigmoid"}, "inbound_nodes": [[["d2", 0, 0, {}]]]},
 {"class_name": "DepthwiseConv2D", "name": "d3", "config": {"name": "d3", "kernel_size": [5, 5], "padding": "valid"}, "inbound_nodes": [[["e3", 0, 0, {}]]]},
 {"class_name": "DepthwiseConv2D", "name": "d3b", "config": {"name": "d3b", "kernel_size": [3, 3], "dilation_rate": [2, 2], "padding": "same"}, "inbound_nodes": [[["e3", 0, 0, {}]]]},
 {"class_name": "GlobalAveragePooling2D", "name": "g3", "config": {"name": "g3"}, "inbound_nodes": [[["d3b", 0, 0, {}]]]},
 {"class_name": "Conv2D", "name": "e4", "config": {"name": "e4", "filters": 96, "kernel_size": [1, 1]}, "inbound_nodes": [[["d3", 0, 0, {}]]]},
 {"class_name": "Conv2D", "name": "e5", "config": {"name": "e5", "filters": 64, "kernel_size": [1, 1], "activation": "relu"}, "inbound_nodes": [[["e4", 0, 0, {}]]]},
 {"class_name": "DepthwiseConv2D", "name": "d5", "config": {"name": "d5", "kernel_size": [3, 3], "dilation_rate": [2, 2], "padding": "same", "activation": "relu"}, "inbound_nodes": [[["e5", 0, 0, {}]]]},
 {"class_name": "GlobalAveragePooling2D", "name": "g5", "config": {"name": "g5"}, "inbound_nodes": [[["d5", 0, 0, {}]]]},
 {"class_name": "Concatenate", "name": "cat", "config": {"name": "cat", "axis": -1}, "inbound_nodes": [[["g3", 0, 0, {}], ["g5", 0, 0, {}]]]},
 {"class_name": "Conv2D", "name": "e6", "config": {"name": "e6", "filters": 48, "kernel_size": [1, 1], "activation": "relu"}, "inbound_nodes": [[["cat", 0, 0, {}]]]},
 {"class_name": "DepthwiseConv2D", "name": "d6", "config": {"name": "d6", "kernel_size": [1, 1]}, "inbound_nodes": [[["e6", 0, 0, {}]]]}
], "input_layers": [["in", 0, 0]], "output_layers": [["d6", 0, 0]]}})";

// Residual connections whose Add is made in the 1x1 convolution before it: with the model
// input (a1), with an earlier layer as the Add's first input (a2), a convolution that has its
// own activation (a3, a5: not fused), one with a second reader (a4, not fused), a Winograd
// layer (a8, not fused), a strided 1x1 shortcut through im2col (a7, ResNet's downsample: not
// fused, its Add made apart ran faster in `chorus run`), and a fused Add that is the model's
// output (a9).
const char* kResidualConfig = R"({"class_name": "Functional", "config": {"name": "res", "layers": [
 {"class_name": "InputLayer", "name": "in", "config": {"name": "in", "batch_input_shape": [null, 9, 11, 64]}, "inbound_nodes": []},
 {"class_name": "Conv2D", "name": "c1", "config": {"name": "c1", "filters": 64, "kernel_size": [1, 1], "use_bias": false}, "inbound_nodes": [[["in", 0, 0, {}]]]},
 {"class_name": "BatchNormalization", "name": "bn1", "config": {"name": "bn1", "axis": -1}, "inbound_nodes": [[["c1", 0, 0, {}]]]},
 {"class_name": "Add", "name": "a1", "config": {"name": "a1"}, "inbound_nodes": [[["in", 0, 0, {}], ["bn1", 0, 0, {}]]]},
 {"class_name": "Activation", "name": "r1", "config": {"name": "r1", "activation": "relu"}, "inbound_nodes": [[["a1", 0, 0, {}]]]},
 {"class_name": "Conv2D", "name": "c2", "config": {"name": "c2", "filters": 64, "kernel_size": [1, 1]}, "inbound_nodes": [[["r1", 0, 0, {}]]]},
 {"class_name": "Add", "name": "a2", "config": {"name": "a2"}, "inbound_nodes": [[["c2", 0, 0, {}], ["r1", 0, 0, {}]]]},
 {"class_name": "Activation", "name": "r2", "config": {"name": "r2", "activation": "sigmoid"}, "inbound_nodes": [[["a2", 0, 0, {}]]]},
 {"class_name": "Conv2D", "name": "c3", "config": {"name": "c3", "filters": 64, "kernel_size": [1, 1], "activation": "relu"}, "inbound_nodes": [[["r2", 0, 0, {}]]]},
 {"class_name": "Add", "name": "a3", "config": {"name": "a3"}, "inbound_nodes": [[["r2", 0, 0, {}], ["c3", 0, 0, {}]]]},
 {"class_name": "Conv2D", "name": "c4", "config": {"name": "c4", "filters": 64, "kernel_size": [1, 1]}, "inbound_nodes": [[["a3", 0, 0, {}]]]},
 {"class_name": "Add", "name": "a4", "config": {"name": "a4"}, "inbound_nodes": [[["a3", 0, 0, {}], ["c4", 0, 0, {}]]]},
 {"class_name": "Multiply", "name": "m4", "config": {"name": "m4"}, "inbound_nodes": [[["a4", 0, 0, {}], ["c4", 0, 0, {}]]]},
 {"class_name": "Conv2D", "name": "c5", "config": {"name": "c5", "filters": 16, "kernel_size": [1, 1]}, "inbound_nodes": [[["m4", 0, 0, {}]]]},
 {"class_name": "Conv2D", "name": "c5b", "config": {"name": "c5b", "filters": 16, "kernel_size": [3, 3], "padding": "same", "activation": "relu"}, "inbound_nodes": [[["m4", 0, 0, {}]]]},
 {"class_name": "Add", "name": "a5", "config": {"name": "a5"}, "inbound_nodes": [[["c5b", 0, 0, {}], ["c5", 0, 0, {}]]]},
 {"class_name": "Conv2D", "name": "c6b", "config": {"name": "c6b", "filters": 64, "kernel_size": [1, 1]}, "inbound_nodes": [[["a5", 0, 0, {}]]]},
 {"class_name": "Conv2D", "name": "c6c", "config": {"name": "c6c", "filters": 64, "kernel_size": [1, 1]}, "inbound_nodes": [[["c6b", 0, 0, {}]]]},
 {"class_name": "Add", "name": "a6", "config": {"name": "a6"}, "inbound_nodes": [[["c6b", 0, 0, {}], ["c6c", 0, 0, {}]]]},
 {"class_name": "Conv2D", "name": "c8", "config": {"name": "c8", "filters": 64, "kernel_size": [3, 3], "padding": "same"}, "inbound_nodes": [[["a6", 0, 0, {}]]]},
 {"class_name": "Add", "name": "a8", "config": {"name": "a8"}, "inbound_nodes": [[["a6", 0, 0, {}], ["c8", 0, 0, {}]]]},
 {"class_name": "Conv2D", "name": "c7a", "config": {"name": "c7a", "filters": 64, "kernel_size": [3, 3], "strides": [2, 2], "padding": "same"}, "inbound_nodes": [[["a8", 0, 0, {}]]]},
 {"class_name": "Conv2D", "name": "c7b", "config": {"name": "c7b", "filters": 64, "kernel_size": [1, 1], "strides": [2, 2]}, "inbound_nodes": [[["a8", 0, 0, {}]]]},
 {"class_name": "Add", "name": "a7", "config": {"name": "a7"}, "inbound_nodes": [[["c7a", 0, 0, {}], ["c7b", 0, 0, {}]]]},
 {"class_name": "Conv2D", "name": "c9", "config": {"name": "c9", "filters": 64, "kernel_size": [1, 1]}, "inbound_nodes": [[["a7", 0, 0, {}]]]},
 {"class_name": "Add", "name": "a9", "config": {"name": "a9"}, "inbound_nodes": [[["a7", 0, 0, {}], ["c9", 0, 0, {}]]]}
], "input_layers": [["in", 0, 0]], "output_layers": [["a9", 0, 0]]}})";

// Depthwise layers run with the 1x1 convolutions around them: a depthwise layer on the model
// input with its projection and the residual Add (d0 p0 a0), an expansion, depthwise layer,
// projection and Add (e1 d1 p1 a1), and a strided block whose depthwise output (18 x 30 x 112)
// is too small to fuse its projection (e2 d2, then p2 on its own).
const char* kDepthwiseChainConfig = R"({"class_name": "Functional", "config": {"name": "chain", "layers": [
 {"class_name": "InputLayer", "name": "in", "config": {"name": "in", "batch_input_shape": [null, 36, 60, 128]}, "inbound_nodes": []},
 {"class_name": "Conv2D", "name": "c0", "config": {"name": "c0", "filters": 64, "kernel_size": [1, 1]}, "inbound_nodes": [[["in", 0, 0, {}]]]},
 {"class_name": "DepthwiseConv2D", "name": "d0", "config": {"name": "d0", "kernel_size": [3, 3], "padding": "same", "activation": "relu6"}, "inbound_nodes": [[["in", 0, 0, {}]]]},
 {"class_name": "Conv2D", "name": "p0", "config": {"name": "p0", "filters": 64, "kernel_size": [1, 1]}, "inbound_nodes": [[["d0", 0, 0, {}]]]},
 {"class_name": "Add", "name": "a0", "config": {"name": "a0"}, "inbound_nodes": [[["c0", 0, 0, {}], ["p0", 0, 0, {}]]]},
 {"class_name": "Conv2D", "name": "e1", "config": {"name": "e1", "filters": 192, "kernel_size": [1, 1], "activation": "relu"}, "inbound_nodes": [[["a0", 0, 0, {}]]]},
 {"class_name": "DepthwiseConv2D", "name": "d1", "config": {"name": "d1", "kernel_size": [3, 3], "padding": "same", "activation": "relu6"}, "inbound_nodes": [[["e1", 0, 0, {}]]]},
 {"class_name": "Conv2D", "name": "p1", "config": {"name": "p1", "filters": 64, "kernel_size": [1, 1]}, "inbound_nodes": [[["d1", 0, 0, {}]]]},
 {"class_name": "Add", "name": "a1", "config": {"name": "a1"}, "inbound_nodes": [[["a0", 0, 0, {}], ["p1", 0, 0, {}]]]},
 {"class_name": "Conv2D", "name": "e2", "config": {"name": "e2", "filters": 112, "kernel_size": [1, 1], "activation": "relu6"}, "inbound_nodes": [[["a1", 0, 0, {}]]]},
 {"class_name": "DepthwiseConv2D", "name": "d2", "config": {"name": "d2", "kernel_size": [3, 3], "strides": [2, 2], "padding": "same"}, "inbound_nodes": [[["e2", 0, 0, {}]]]},
 {"class_name": "Conv2D", "name": "p2", "config": {"name": "p2", "filters": 16, "kernel_size": [1, 1]}, "inbound_nodes": [[["d2", 0, 0, {}]]]}
], "input_layers": [["in", 0, 0]], "output_layers": [["p2", 0, 0]]}})";

// forward(), with its fused steps, against every layer run on its own (per-layer timing runs
// them apart) and against the naive evaluation, at 1-3 compute threads.
void expect_fused_equals_apart(const model::Model& m, std::vector<int> batch_sizes, std::uint64_t seed,
                               double tolerance) {
  for (int threads : {1, 2, 3}) {
    SCOPED_TRACE(cat(threads, " threads"));
    set_compute_threads(threads);
    for (int frames : batch_sizes) {
      Tensor in = test::random_tensor(frames, m.input_shape(), seed + frames);
      std::vector<double> seconds(m.nodes().size(), 0.0);
      Tensor apart = m.forward(in, &seconds);
      Tensor together = m.forward(in);
      EXPECT_LT(max_relative_error(together, apart), tolerance);
      EXPECT_LT(max_relative_error(together, naive_forward(m, in)), tolerance);
    }
  }
  set_compute_threads(1);
}

}  // namespace

TEST(Model, ForwardWithBufferReuseEqualsNaiveEvaluation) {
  test::TempDir dir;
  test::write_random_model(kDagConfig, dir.path("dag.h5"));
  io::KerasLoadOptions raw;
  raw.optimize = false;
  model::Model m = io::load_keras_model(dir.path("dag.h5"), raw);
  Tensor in = test::random_tensor(3, m.input_shape(), 4);
  Tensor fast = m.forward(in);
  Tensor slow = naive_forward(m, in);
  EXPECT_EQ(max_relative_error(fast, slow), 0.0);
  // Later runs reuse the buffers the earlier ones left: different batch sizes and inputs in
  // between must not leak into the answer.
  Tensor other = test::random_tensor(5, m.input_shape(), 9), one = test::random_tensor(1, m.input_shape(), 10);
  EXPECT_EQ(max_relative_error(m.forward(other), naive_forward(m, other)), 0.0);
  EXPECT_EQ(max_relative_error(m.forward(one), naive_forward(m, one)), 0.0);
  EXPECT_EQ(max_relative_error(m.forward(in), fast), 0.0);
}

TEST(Model, OptimiserKeepsOutputs) {
  test::TempDir dir;
  test::write_random_model(kDagConfig, dir.path("dag.h5"));
  io::KerasLoadOptions raw;
  raw.optimize = false;
  model::Model plain = io::load_keras_model(dir.path("dag.h5"), raw);
  model::Model fused = io::load_keras_model(dir.path("dag.h5"));
  EXPECT_LT(fused.nodes().size(), plain.nodes().size());
  Tensor in = test::random_tensor(2, plain.input_shape(), 5);
  EXPECT_LT(max_relative_error(fused.forward(in), plain.forward(in)), 1e-5);
  // Folded and fused layers are still found by their Keras names.
  EXPECT_EQ(fused.find("bn1"), fused.find("c1"));
  EXPECT_EQ(fused.find("r1"), fused.find("c1"));
  EXPECT_EQ(fused.find("sm"), fused.find("fc"));
  EXPECT_EQ(fused.find("r2"), fused.find("add"));
  EXPECT_EQ(fused.find("drop"), fused.find("gap"));
  EXPECT_EQ(fused.find("nothing"), -1);
}

TEST(Model, OptimiserLeavesSharedProducersAlone) {
  // bn2 feeds both the add and nothing else, but cat feeds three readers: no folding across it.
  test::TempDir dir;
  test::write_random_model(kDagConfig, dir.path("dag.h5"));
  model::Model fused = io::load_keras_model(dir.path("dag.h5"));
  EXPECT_NE(fused.find("cat"), -1);
  EXPECT_EQ(fused.node(fused.find("cat")).name(), "cat");
  auto consumers = fused.consumers(fused.find("cat"));
  EXPECT_EQ(consumers.size(), 2u);  // c2 (with bn2 folded) and add
}

TEST(Model, CostsAndShapes) {
  test::TempDir dir;
  test::write_random_model(kDagConfig, dir.path("dag.h5"));
  io::KerasLoadOptions raw;
  raw.optimize = false;
  model::Model m = io::load_keras_model(dir.path("dag.h5"), raw);
  int c1 = m.find("c1");
  EXPECT_EQ(m.cost(c1).macs, 12.0 * 12 * 8 * 3 * 3 * 3);
  EXPECT_EQ(m.cost(c1).weight_bytes, 3u * 3 * 3 * 8 * 4);
  EXPECT_EQ(m.node(m.find("cat")).layer->output_shape(), (Shape{12, 12, 16}));
  EXPECT_EQ(m.output_shape(), (Shape{1, 1, 5}));
  Tensor wrong(1, {12, 12, 4});
  EXPECT_THROW(m.forward(wrong), Error);
  // bn1 folds into c1, which has no bias of its own and gains one: counted the same whether
  // the weights were read (`chorus bench`) or not (`chorus info`).
  io::ModelLoadOptions structure_only;
  structure_only.load_weights = false;
  const model::Model described = io::load_model_file(dir.path("dag.h5"), structure_only);
  const model::Model loaded = io::load_model_file(dir.path("dag.h5"));
  EXPECT_EQ(described.cost(described.find("c1")).weight_bytes, (3u * 3 * 3 * 8 + 8) * 4);
  EXPECT_EQ(loaded.cost(loaded.find("c1")).weight_bytes, (3u * 3 * 3 * 8 + 8) * 4);
  EXPECT_EQ(described.total_cost().weight_bytes, loaded.total_cost().weight_bytes);
}

TEST(Model, FusedExpansionAndDepthwiseEqualLayerByLayer) {
  test::TempDir dir;
  test::write_random_model(kInvertedResidualConfig, dir.path("ir.h5"));
  model::Model m = io::load_keras_model(dir.path("ir.h5"));
  std::vector<std::string> fused;
  for (int n = 0; n < static_cast<int>(m.nodes().size()); ++n)
    if (m.fuses_with_next(n)) fused.push_back(m.nodes()[n].name());
  EXPECT_EQ(fused, std::vector<std::string>{"e1"});
  expect_fused_equals_apart(m, {1, 2}, 30, 1e-6);
}

TEST(Model, ResidualAddInConvolutionEqualsLayerByLayer) {
  test::TempDir dir;
  test::write_random_model(kResidualConfig, dir.path("res.h5"));
  model::Model m = io::load_keras_model(dir.path("res.h5"));
  std::vector<std::string> fused;
  for (int n = 0; n < static_cast<int>(m.nodes().size()); ++n)
    if (m.adds_into_next(n) != model::kNoNode) fused.push_back(m.nodes()[n].name());
  EXPECT_EQ(fused, (std::vector<std::string>{"c1", "c2", "c6c", "c9"}));
  const auto& c8 = dynamic_cast<const layers::Conv2D&>(*m.nodes()[m.find("c8")].layer);
  EXPECT_GT(c8.winograd_tile(), 0);
  expect_fused_equals_apart(m, {1, 3}, 40, 1e-5);
}

TEST(Model, DepthwiseChainsEqualLayerByLayer) {
  test::TempDir dir;
  test::write_random_model(kDepthwiseChainConfig, dir.path("chain.h5"));
  model::Model m = io::load_keras_model(dir.path("chain.h5"));
  std::vector<std::string> runs;
  for (int n = 0; n < static_cast<int>(m.nodes().size());) {
    const int length = m.fused_run(n).length;
    if (length > 1) runs.push_back(cat(m.nodes()[n].name(), " x", length));
    n += length;
  }
  EXPECT_EQ(runs, (std::vector<std::string>{"d0 x3", "e1 x4", "e2 x2"}));
  expect_fused_equals_apart(m, {1, 2}, 50, 1e-5);
}

TEST(Model, TimingAsRunGivesEachFusedStepOneTimeOnItsFirstNode) {
  test::TempDir dir;
  test::write_random_model(kDepthwiseChainConfig, dir.path("chain.h5"));
  model::Model m = io::load_keras_model(dir.path("chain.h5"));
  const int nodes = static_cast<int>(m.nodes().size());
  Tensor in = test::random_tensor(2, m.input_shape(), 51);
  std::vector<double> seconds(nodes, 0.0);
  std::vector<int> step_first(nodes, -1);
  const Tensor timed = m.forward({&in}, &seconds, &step_first)[0];
  EXPECT_EQ(max_relative_error(m.forward(in), timed), 0.0);  // the same steps, so the same sums
  // What `chorus bench --layers` shows: the steps of fused_run, each timed once.
  std::vector<std::string> steps;
  for (int n = 0; n < nodes; ++n) {
    if (step_first[n] == n) {
      int length = 1;
      while (n + length < nodes && step_first[n + length] == n) ++length;
      steps.push_back(cat(m.nodes()[n].name(), " x", length));
      EXPECT_GT(seconds[n], 0.0) << m.nodes()[n].name();
    } else {
      EXPECT_EQ(seconds[n], 0.0) << m.nodes()[n].name() << " ran in the step of node " << step_first[n];
    }
  }
  std::vector<std::string> expected;
  for (int n = 0; n < nodes;) {
    const int length = m.fused_run(n).length;
    expected.push_back(cat(m.nodes()[n].name(), " x", length));
    n += length;
  }
  EXPECT_EQ(steps, expected);
  EXPECT_NE(std::find(steps.begin(), steps.end(), "e1 x4"), steps.end());
}
