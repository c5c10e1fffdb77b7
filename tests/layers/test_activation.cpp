#include <gtest/gtest.h>

#include <limits>

#include "core/parallel.h"
#include "layers/activation.h"
#include "layers/activation_layer.h"
#include "reference/reference_ops.h"
#include "reference/test_util.h"

using namespace chorus;
using namespace chorus::layers;

TEST(Activation, EveryNamedActivationMatchesReference) {
  Tensor in = test::random_tensor(2, {3, 4, 7}, 3, -8.0f, 8.0f);
  struct Case { std::string name; std::string ref; double alpha; };
  const Case cases[] = {{"linear", "linear", 0},        {"relu", "relu", 0},        {"relu6", "relu6", 0},
                        {"leaky_relu", "leaky_relu", 0.2}, {"elu", "elu", 1.0},      {"selu", "selu", 0},
                        {"sigmoid", "sigmoid", 0},      {"hard_sigmoid", "hard_sigmoid", 0.2},
                        {"tanh", "tanh", 0},            {"softmax", "softmax", 0},  {"swish", "swish", 0},
                        {"silu", "swish", 0},           {"gelu", "gelu", 0},        {"softplus", "softplus", 0},
                        {"softsign", "softsign", 0},    {"exponential", "exponential", 0}};
  for (const auto& c : cases) {
    ActivationLayer layer("a", "Activation", activation_from_name(c.name));
    layer.build({in.shape()});
    Tensor out;
    layer.forward({&in}, out);
    EXPECT_LT(max_relative_error(out, ref::activation(in, c.ref, c.alpha)), 2e-6) << c.name;
  }
}

// Sigmoid and swish run a vector at a time and the layer spreads positions over threads: far
// into both tails, on a map whose size is no multiple of a vector, with 1 and 3 threads.
TEST(Activation, SigmoidAndSwishOverWideRangesAndThreads) {
  Tensor in = test::random_tensor(1, {37, 29, 5}, 8, -40.0f, 40.0f);
  for (int threads : {1, 3}) {
    set_compute_threads(threads);
    for (const char* name : {"sigmoid", "swish"}) {
      ActivationLayer layer("a", "Activation", activation_from_name(name));
      layer.build({in.shape()});
      Tensor out;
      layer.forward({&in}, out);
      const Tensor expected = ref::activation(in, name, 0);
      EXPECT_LT(max_relative_error(out, expected), 2e-6) << name << ", " << threads << " threads";
      for (std::size_t i = 0; i < out.size(); ++i) {  // 0 and 1 reached, never passed
        if (std::string(name) == "sigmoid") {
          ASSERT_TRUE(out.data()[i] >= 0.0f && out.data()[i] <= 1.0f) << i;
        }
      }
    }
  }
  set_compute_threads(1);
}

TEST(Activation, Keras3HardSigmoidUsesOneSixth) {
  Activation a = activation_from_name("hard_sigmoid", /*keras3=*/true);
  EXPECT_NEAR(a.apply_one(1.5f), 1.5f / 6 + 0.5f, 1e-7);
  EXPECT_NEAR(activation_from_name("hard_sigmoid").apply_one(1.5f), 0.8f, 1e-7);
}

TEST(Activation, ReluLayerWithAllOptions) {
  // Keras ReLU(max_value=4, negative_slope=0.1, threshold=1).
  Activation a;
  a.kind = ActivationKind::relu;
  a.max_value = 4;
  a.alpha = 0.1f;
  a.threshold = 1;
  EXPECT_FLOAT_EQ(a.apply_one(5), 4);
  EXPECT_FLOAT_EQ(a.apply_one(2), 2);
  EXPECT_FLOAT_EQ(a.apply_one(1), 1);
  EXPECT_FLOAT_EQ(a.apply_one(0), -0.1f);
  EXPECT_FLOAT_EQ(a.apply_one(-2), -0.3f);
  float data[4] = {-1, 0.5f, 3, 9};
  a.apply(data, 4, 4);
  EXPECT_FLOAT_EQ(data[0], -0.2f);
  EXPECT_FLOAT_EQ(data[3], 4);
}

TEST(Activation, UnknownNameListsSupported) {
  try {
    activation_from_name("mish");
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("mish"), std::string::npos);
    EXPECT_NE(std::string(e.what()).find("relu6"), std::string::npos);
  }
}

TEST(Activation, SoftmaxIsStableForLargeInputs) {
  float row[3] = {1000, 1001, 1002};
  activation_from_name("softmax").apply(row, 3, 3);
  EXPECT_NEAR(row[0] + row[1] + row[2], 1.0f, 1e-6);
  EXPECT_GT(row[2], row[1]);
}
