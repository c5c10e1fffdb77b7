#include <gtest/gtest.h>

#include "core/random.h"
#include "layers/depthwise_conv2d.h"
#include "reference/reference_ops.h"
#include "reference/test_util.h"

using namespace chorus;
using namespace chorus::layers;

TEST(DepthwiseConv2D, RandomShapes) {
  Rng rng(77);
  auto pick = [&](int lo, int hi) { return lo + static_cast<int>(rng.next_u64() % (hi - lo + 1)); };
  const char* activations[] = {"linear", "relu6", "sigmoid", "leaky_relu"};
  for (int i = 0; i < 100; ++i) {
    DepthwiseConv2DSettings s;
    // Now and then taller than the 8 kernel rows the whole-row path takes.
    s.kernel_h = pick(0, 9) == 0 ? 9 : pick(1, 5);
    s.kernel_w = pick(1, 5);
    bool dilate = pick(0, 3) == 0;
    s.stride_h = dilate ? 1 : pick(1, 2);
    s.stride_w = dilate ? 1 : pick(1, 2);
    s.dilation_h = dilate ? pick(1, 3) : 1;
    s.dilation_w = dilate ? pick(1, 3) : 1;
    s.depth_multiplier = pick(1, 3);
    s.padding = pick(0, 1) ? Padding::same : Padding::valid;
    s.use_bias = pick(0, 1) == 1;
    // Clamps (relu6) run in registers on inner pixels, the others over each row after.
    s.activation = activation_from_name(activations[pick(0, 3)]);
    // Up to 70 channels: the 16- and 8-channel register chunks and the tail all run.
    const int cin = pick(1, 70);
    const int h = pick(1, 10) + (s.kernel_h - 1) * s.dilation_h, w = pick(1, 10) + (s.kernel_w - 1) * s.dilation_w;
    const int frames = pick(1, 2);
    SCOPED_TRACE(cat(h, "x", w, "x", cin, " k", s.kernel_h, "x", s.kernel_w, " s", s.stride_h, "x", s.stride_w, " d",
                     s.dilation_h, "x", s.dilation_w, " m", s.depth_multiplier, " ", s.activation.str()));
    DepthwiseConv2D dw("dw", s);
    auto kernel = test::random_vector(static_cast<std::size_t>(s.kernel_h) * s.kernel_w * cin * s.depth_multiplier, i);
    auto bias = s.use_bias ? test::random_vector(cin * s.depth_multiplier, i + 500) : std::vector<float>{};
    WeightMap weights{{"depthwise_kernel", kernel}};
    if (s.use_bias) weights["bias"] = bias;
    test::build_layer(dw, {{h, w, cin}}, weights);
    Tensor in = test::random_tensor(frames, {h, w, cin}, i + 900);
    Tensor out;
    dw.forward({&in}, out);
    Tensor expected = ref::depthwise(in, kernel, bias, s.depth_multiplier,
                                     {s.kernel_h, s.kernel_w, s.stride_h, s.stride_w, s.dilation_h, s.dilation_w,
                                      s.padding == Padding::same, 1});
    for (std::size_t j = 0; j < expected.size(); ++j) expected.data()[j] = s.activation.apply_one(expected.data()[j]);
    ASSERT_EQ(out.shape(), expected.shape());
    EXPECT_LT(max_relative_error(out, expected), 1e-5);
  }
}

TEST(DepthwiseConv2D, FoldedBatchNormAndRelu6) {
  DepthwiseConv2DSettings s;
  s.padding = Padding::same;
  s.use_bias = false;
  s.activation = activation_from_name("relu6");
  DepthwiseConv2D dw("dw", s);
  auto kernel = test::random_vector(3 * 3 * 8, 1, -3, 3);
  test::build_layer(dw, {{5, 5, 8}}, {{"depthwise_kernel", kernel}});
  auto scale = test::random_vector(8, 2, 0.5, 2), shift = test::random_vector(8, 3);
  dw.fold_scale_shift(scale, shift);
  Tensor in = test::random_tensor(1, {5, 5, 8}, 4);
  Tensor out;
  dw.forward({&in}, out);
  Tensor expected = ref::depthwise(in, kernel, {}, 1, {3, 3, 1, 1, 1, 1, true, 1});
  for (std::size_t i = 0; i < expected.size(); ++i)
    expected.data()[i] = std::clamp(expected.data()[i] * scale[i % 8] + shift[i % 8], 0.0f, 6.0f);
  EXPECT_LT(max_relative_error(out, expected), 1e-5);
}
