#include <gtest/gtest.h>

#include "core/parallel.h"
#include "core/random.h"
#include "layers/depthwise_conv2d.h"
#include "layers/pointwise_depthwise.h"
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

// MobileNet's shapes: 3x3 kernels at strides 1 and 2, 16 channels and more, rows wide enough
// for several 4-pixel groups (the path with the stride known at compile time), odd widths and
// channel counts for the tails.
TEST(DepthwiseConv2D, MobileNetGeometryMatchesReference) {
  int seed = 0;
  for (int stride : {1, 2})
    for (int cin : {16, 32, 40})
      for (int w : {9, 17, 24}) {
        DepthwiseConv2DSettings s;
        s.stride_h = s.stride_w = stride;
        s.padding = Padding::same;
        s.activation = activation_from_name("relu6");
        SCOPED_TRACE(cat("7x", w, "x", cin, " s", stride));
        DepthwiseConv2D dw("dw", s);
        auto kernel = test::random_vector(static_cast<std::size_t>(9) * cin, ++seed);
        auto bias = test::random_vector(cin, ++seed);
        test::build_layer(dw, {{7, w, cin}}, {{"depthwise_kernel", kernel}, {"bias", bias}});
        Tensor in = test::random_tensor(1, {7, w, cin}, ++seed);
        Tensor out;
        dw.forward({&in}, out);
        Tensor expected = ref::depthwise(in, kernel, bias, 1, {3, 3, stride, stride, 1, 1, true, 1});
        for (std::size_t j = 0; j < expected.size(); ++j) expected.data()[j] = std::clamp(expected.data()[j], 0.0f, 6.0f);
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

// A 1x1 expansion and a depthwise layer run fused against the two run one after the other:
// windows of one band and of several (rows of up to 230 x 160 floats against a 512 KB
// window), strides, padding, dilation, kernel sizes, clamped and other activations, small_gemm
// and packed_gemm expansions, batches, and 1-3 threads (bands split between them).
TEST(PointwiseDepthwise, EqualsTheLayersApart) {
  Rng rng(5150);
  auto pick = [&](int lo, int hi) { return lo + static_cast<int>(rng.next_u64() % (hi - lo + 1)); };
  const char* activations[] = {"relu6", "relu", "linear", "sigmoid"};
  for (int i = 0; i < 24; ++i) {
    const int threads = 1 + i % 3;
    Conv2DSettings ps;
    ps.filters = pick(0, 1) ? pick(96, 160) : pick(16, 40);
    ps.activation = activation_from_name(activations[pick(0, 3)]);
    DepthwiseConv2DSettings ds;
    ds.kernel_h = ds.kernel_w = pick(0, 3) ? 3 : 5;
    ds.stride_h = ds.stride_w = pick(1, 2);
    ds.dilation_h = ds.dilation_w = ds.stride_h == 1 && pick(0, 3) == 0 ? 2 : 1;
    ds.padding = pick(0, 2) ? Padding::same : Padding::valid;
    ds.activation = activation_from_name(activations[pick(0, 3)]);
    const int cin = pick(0, 1) ? pick(64, 80) : pick(3, 24);  // packed_gemm or small_gemm
    const int h = pick(10, 40), w = pick(0, 1) ? pick(150, 230) : pick(12, 30), frames = pick(1, 2);
    SCOPED_TRACE(cat(frames, "x", h, "x", w, "x", cin, " -> ", ps.filters, " ", ps.activation.str(), ", depthwise ",
                     ds.kernel_h, "x", ds.kernel_w, " s", ds.stride_h, " d", ds.dilation_h,
                     ds.padding == Padding::same ? " same " : " valid ", ds.activation.str(), ", ", threads,
                     " threads"));
    Conv2D pw("pw", ps);
    test::build_layer(pw, {{h, w, cin}},
                      {{"kernel", test::random_vector(static_cast<std::size_t>(cin) * ps.filters, 3 * i, -0.3f, 0.3f)},
                       {"bias", test::random_vector(ps.filters, 3 * i + 1)}});
    ASSERT_TRUE(pw.runs_by_pixels());
    DepthwiseConv2D dw("dw", ds);
    test::build_layer(dw, {pw.output_shape()},
                      {{"depthwise_kernel", test::random_vector(static_cast<std::size_t>(ds.kernel_h) * ds.kernel_w *
                                                                    ps.filters, 3 * i + 2)},
                       {"bias", test::random_vector(ps.filters, 3 * i + 3)}});
    Tensor in = test::random_tensor(frames, {h, w, cin}, 100 + i), mid, apart, fused;
    set_compute_threads(threads);
    pw.forward({&in}, mid);
    dw.forward({&mid}, apart);
    forward_pointwise_depthwise(pw, dw, in, fused);
    set_compute_threads(1);
    ASSERT_EQ(fused.shape(), apart.shape());
    ASSERT_EQ(fused.frames(), apart.frames());
    // Bands split the pixels into other tiles than the whole layer does, and packed_gemm's
    // tiles of 1-3 pixels add odd and even rows of k apart: equal up to rounding.
    EXPECT_LT(max_relative_error(fused, apart), 1e-5);
  }
}
