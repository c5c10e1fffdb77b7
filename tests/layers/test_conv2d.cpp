// Conv2D against the plain reference loop on many random shapes and settings.
#include <gtest/gtest.h>

#include "core/random.h"
#include "layers/conv2d.h"
#include "layers/separable_conv2d.h"
#include "reference/reference_ops.h"
#include "reference/test_util.h"

using namespace chorus;
using namespace chorus::layers;

namespace {

struct ConvCase {
  int frames, h, w, cin, cout, kh, kw, sh, sw, dh, dw, groups;
  bool same, bias;
  std::string str() const {
    return cat("n", frames, " ", h, "x", w, "x", cin, " -> ", cout, " k", kh, "x", kw, " s", sh, "x", sw, " d", dh, "x",
               dw, " g", groups, same ? " same" : " valid", bias ? " bias" : "");
  }
};

void check_conv(const ConvCase& c, std::uint64_t seed) {
  SCOPED_TRACE(c.str());
  Conv2DSettings s;
  s.filters = c.cout;
  s.kernel_h = c.kh;
  s.kernel_w = c.kw;
  s.stride_h = c.sh;
  s.stride_w = c.sw;
  s.dilation_h = c.dh;
  s.dilation_w = c.dw;
  s.groups = c.groups;
  s.padding = c.same ? Padding::same : Padding::valid;
  s.use_bias = c.bias;
  Conv2D conv("conv", s);
  auto kernel = test::random_vector(static_cast<std::size_t>(c.kh) * c.kw * (c.cin / c.groups) * c.cout, seed);
  auto bias = c.bias ? test::random_vector(c.cout, seed + 1) : std::vector<float>{};
  WeightMap w{{"kernel", kernel}};
  if (c.bias) w["bias"] = bias;
  test::build_layer(conv, {{c.h, c.w, c.cin}}, w);
  Tensor in = test::random_tensor(c.frames, {c.h, c.w, c.cin}, seed + 2);
  Tensor out;
  conv.forward({&in}, out);
  ref::ConvParams p{c.kh, c.kw, c.sh, c.sw, c.dh, c.dw, c.same, c.groups};
  Tensor expected = ref::conv2d(in, kernel, bias, c.cout, p);
  ASSERT_EQ(out.shape(), expected.shape());
  EXPECT_LT(max_relative_error(out, expected), 1e-5);
}

}  // namespace

TEST(Conv2D, HandPickedShapes) {
  const ConvCase cases[] = {
      {1, 5, 5, 1, 1, 3, 3, 1, 1, 1, 1, 1, false, false},
      {2, 8, 8, 3, 4, 3, 3, 1, 1, 1, 1, 1, true, true},
      {1, 7, 6, 4, 8, 3, 3, 2, 2, 1, 1, 1, true, true},   // odd size, stride 2: TF puts extra pad at the end
      {1, 6, 6, 4, 8, 3, 3, 2, 2, 1, 1, 1, true, true},   // even size, stride 2: asymmetric padding
      {1, 10, 9, 2, 3, 5, 5, 1, 1, 1, 1, 1, true, true},
      {1, 9, 9, 4, 4, 3, 3, 1, 1, 2, 2, 1, true, true},   // dilation
      {1, 9, 11, 4, 6, 3, 3, 1, 1, 2, 3, 1, false, true}, // dilation per axis, valid
      {1, 8, 8, 8, 8, 3, 3, 1, 1, 1, 1, 4, true, true},   // groups
      {1, 8, 8, 6, 9, 3, 3, 2, 2, 1, 1, 3, false, false}, // groups, stride, valid
      {3, 6, 6, 16, 24, 1, 1, 1, 1, 1, 1, 1, false, true}, // pointwise fast path
      {1, 6, 6, 16, 24, 1, 1, 2, 2, 1, 1, 1, false, true}, // strided 1x1 goes through im2col
      {1, 12, 5, 3, 7, 1, 5, 1, 1, 1, 1, 1, true, true},  // non-square kernel
      {1, 227, 227, 3, 8, 11, 11, 4, 4, 1, 1, 1, false, true}, // AlexNet conv1 geometry
  };
  std::uint64_t seed = 1;
  for (const auto& c : cases) check_conv(c, seed += 10);
}

TEST(Conv2D, RandomShapes) {
  Rng rng(2024);
  auto pick = [&](int lo, int hi) { return lo + static_cast<int>(rng.next_u64() % (hi - lo + 1)); };
  for (int i = 0; i < 120; ++i) {
    ConvCase c;
    c.frames = pick(1, 2);
    c.groups = pick(1, 3) == 3 ? pick(2, 3) : 1;
    c.cin = c.groups * pick(1, 5);
    c.cout = c.groups * pick(1, 5);
    c.kh = pick(1, 4);
    c.kw = pick(1, 4);
    bool dilate = pick(0, 3) == 0;
    c.sh = dilate ? 1 : pick(1, 3);
    c.sw = dilate ? 1 : pick(1, 3);
    c.dh = dilate ? pick(1, 3) : 1;
    c.dw = dilate ? pick(1, 3) : 1;
    c.same = pick(0, 1) == 1;
    c.bias = pick(0, 1) == 1;
    c.h = pick(1, 12) + (c.same ? 0 : (c.kh - 1) * c.dh);
    c.w = pick(1, 12) + (c.same ? 0 : (c.kw - 1) * c.dw);
    check_conv(c, 1000 + i);
  }
}

TEST(Conv2D, FusedActivationAndFoldedScale) {
  Conv2DSettings s;
  s.filters = 5;
  s.kernel_h = s.kernel_w = 3;
  s.padding = Padding::same;
  s.activation = activation_from_name("relu6");
  Conv2D conv("conv", s);
  auto kernel = test::random_vector(3 * 3 * 4 * 5, 5, -2, 2);
  auto bias = test::random_vector(5, 6);
  test::build_layer(conv, {{6, 6, 4}}, {{"kernel", kernel}, {"bias", bias}});
  auto scale = test::random_vector(5, 7, 0.5f, 2.0f), shift = test::random_vector(5, 8);
  conv.fold_scale_shift(scale, shift);
  Tensor in = test::random_tensor(1, {6, 6, 4}, 9);
  Tensor out;
  conv.forward({&in}, out);
  Tensor expected = ref::conv2d(in, kernel, bias, 5, {3, 3, 1, 1, 1, 1, true, 1});
  for (std::size_t i = 0; i < expected.size(); ++i) {
    int c = static_cast<int>(i % 5);
    expected.data()[i] = std::min(6.0f, std::max(0.0f, expected.data()[i] * scale[c] + shift[c]));
  }
  EXPECT_LT(max_relative_error(out, expected), 1e-5);
}

TEST(Conv2D, RejectsBadSettings) {
  Conv2DSettings s;
  s.filters = 6;
  s.groups = 4;
  EXPECT_THROW(Conv2D("c", s), Error);
  s.groups = 3;
  Conv2D conv("c", s);
  EXPECT_THROW(conv.build({{4, 4, 4}}), Error);  // 4 input channels, 3 groups
  Conv2DSettings big;
  big.kernel_h = big.kernel_w = 7;
  Conv2D too_big("c", big);
  EXPECT_THROW(too_big.build({{5, 5, 1}}), Error);
}

TEST(SeparableConv2D, MatchesDepthwiseThenPointwise) {
  for (int mult : {1, 2}) {
    for (bool same : {true, false}) {
      SeparableConv2DSettings s;
      s.depthwise.kernel_h = s.depthwise.kernel_w = 3;
      s.depthwise.depth_multiplier = mult;
      s.depthwise.padding = same ? Padding::same : Padding::valid;
      s.depthwise.stride_h = s.depthwise.stride_w = 2;
      s.filters = 7;
      SeparableConv2D sep("sep", s);
      auto dk = test::random_vector(3 * 3 * 4 * mult, 11), pk = test::random_vector(4 * mult * 7, 12);
      auto bias = test::random_vector(7, 13);
      test::build_layer(sep, {{9, 8, 4}}, {{"depthwise_kernel", dk}, {"pointwise_kernel", pk}, {"bias", bias}});
      Tensor in = test::random_tensor(2, {9, 8, 4}, 14);
      Tensor out;
      sep.forward({&in}, out);
      Tensor mid = ref::depthwise(in, dk, {}, mult, {3, 3, 2, 2, 1, 1, same, 1});
      Tensor expected = ref::conv2d(mid, pk, bias, 7, {1, 1, 1, 1, 1, 1, false, 1});
      EXPECT_LT(max_relative_error(out, expected), 1e-5) << "mult " << mult << " same " << same;
    }
  }
}
