// Conv2D against the plain reference loop on many random shapes and settings.
#include <gtest/gtest.h>

#include <cmath>

#include "core/random.h"
#include "layers/conv2d.h"
#include "layers/packed_gemm.h"
#include "layers/separable_conv2d.h"
#include "layers/small_gemm.h"
#include "layers/winograd.h"
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

void apply_reference_activation(Tensor& t, const Activation& act) {
  if (act.kind == ActivationKind::softmax)
    act.apply(t.data(), t.size(), t.shape().c);
  else
    for (std::size_t i = 0; i < t.size(); ++i) t.data()[i] = act.apply_one(t.data()[i]);
}

struct WinogradCase {
  int tile, frames, h, w, cin, cout;
  Pads pads;
  bool bias;
  std::string activation;
  int kernel = 3;
  std::string str() const {
    return cat("F(", tile, ", ", kernel, ") n", frames, " ", h, "x", w, "x", cin, " -> ", cout, " pads ", pads.top, ",",
               pads.bottom, ",", pads.left, ",", pads.right, bias ? " bias " : " ", activation);
  }
};

void check_winograd(const WinogradCase& c, std::uint64_t seed) {
  SCOPED_TRACE(c.str());
  const int r = c.kernel;
  auto kernel = test::random_vector(static_cast<std::size_t>(r) * r * c.cin * c.cout, seed);
  auto bias = c.bias ? test::random_vector(c.cout, seed + 1) : std::vector<float>{};
  Tensor in = test::random_tensor(c.frames, {c.h, c.w, c.cin}, seed + 2);
  const Activation act = activation_from_name(c.activation);
  Winograd wino(r, c.tile, kernel, c.cin, c.cout);
  const int oh = c.h + c.pads.top + c.pads.bottom - (r - 1), ow = c.w + c.pads.left + c.pads.right - (r - 1);
  Tensor out(c.frames, {oh, ow, c.cout});
  wino.forward(in.data(), c.frames, c.h, c.w, c.pads, oh, ow, c.bias ? bias.data() : nullptr, act, out.data());
  Tensor padded = ref::zero_pad(in, c.pads.top, c.pads.bottom, c.pads.left, c.pads.right);
  Tensor expected = ref::conv2d(padded, kernel, bias, c.cout, {r, r, 1, 1, 1, 1, false, 1});
  apply_reference_activation(expected, act);
  ASSERT_EQ(out.shape(), expected.shape());
  // 6x6 tiles' transforms have larger coefficients (up to 16 and 1/24), so more rounding.
  EXPECT_LT(test::error_vs_largest(out, expected), c.tile == 2 && r == 3 ? 1e-5 : 1e-4);
}

}  // namespace

TEST(Conv2D, HandPickedShapes) {
  const ConvCase cases[] = {
      {1, 5, 5, 1, 1, 3, 3, 1, 1, 1, 1, 1, false, false},
      {2, 8, 8, 3, 4, 3, 3, 1, 1, 1, 1, 1, true, true},
      {1, 7, 6, 4, 8, 3, 3, 2, 2, 1, 1, 1, true, true},  // odd size, stride 2: TF puts extra pad at the end
      {1, 6, 6, 4, 8, 3, 3, 2, 2, 1, 1, 1, true, true},  // even size, stride 2: asymmetric padding
      {1, 10, 9, 2, 3, 5, 5, 1, 1, 1, 1, 1, true, true},
      {1, 9, 9, 4, 4, 3, 3, 1, 1, 2, 2, 1, true, true},         // dilation
      {1, 9, 11, 4, 6, 3, 3, 1, 1, 2, 3, 1, false, true},       // dilation per axis, valid
      {1, 8, 8, 8, 8, 3, 3, 1, 1, 1, 1, 4, true, true},         // groups
      {1, 8, 8, 6, 9, 3, 3, 2, 2, 1, 1, 3, false, false},       // groups, stride, valid
      {3, 6, 6, 16, 24, 1, 1, 1, 1, 1, 1, 1, false, true},      // pointwise fast path
      {2, 21, 23, 5, 600, 1, 1, 1, 1, 1, 1, 1, false, true},    // pointwise, many filters, batch of 2
      {1, 6, 6, 16, 24, 1, 1, 2, 2, 1, 1, 1, false, true},      // strided 1x1 goes through im2col
      {1, 12, 5, 3, 7, 1, 5, 1, 1, 1, 1, 1, true, true},        // non-square kernel
      {1, 227, 227, 3, 8, 11, 11, 4, 4, 1, 1, 1, false, true},  // AlexNet conv1 geometry
      // 3-channel 3x3, 7x7 and 11x11 kernels gather runs of inside pixels at once
      {2, 40, 37, 3, 32, 3, 3, 2, 2, 1, 1, 1, true, true},    // MobileNetV2's first layer, padded
      {1, 45, 44, 3, 16, 7, 7, 2, 2, 1, 1, 1, true, false},   // ResNet's conv1
      {1, 30, 31, 3, 5, 11, 11, 4, 4, 1, 1, 1, true, true},   // AlexNet's, padded
      {1, 15, 14, 3, 8, 3, 3, 1, 1, 2, 1, 1, true, true},     // dilated rows only
      // Too large for small_gemm: packed_gemm (k >= 64, filters >= 32) or sgemm
      {2, 9, 10, 300, 48, 1, 1, 1, 1, 1, 1, 1, false, true},   // pointwise, packed
      {1, 11, 9, 40, 40, 3, 3, 2, 2, 1, 1, 1, true, true},     // im2col, packed (stride 2: no Winograd)
      {1, 9, 9, 4, 1100, 3, 3, 1, 1, 1, 1, 1, true, false},    // k = 36, 1100 filters: sgemm
      {1, 5, 5, 300, 20, 1, 1, 1, 1, 1, 1, 1, false, true},    // pointwise, sgemm
      {1, 7, 7, 40, 24, 3, 3, 1, 1, 1, 1, 1, true, true},      // im2col, sgemm
  };
  std::uint64_t seed = 1;
  for (const auto& c : cases) check_conv(c, seed += 10);
}

// small_gemm against a plain loop: pixel counts around its 6-pixel blocks, filter counts around
// its 16- and 8-filter vectors, input rows wider than k, with and without bias, activations
// clamped in registers (relu, relu6) or applied after (sigmoid), weights in L1 (tiles over all
// filters) and beyond (blocks of pixels, the last 6 cases).
TEST(SmallGemm, MatchesPlainLoop) {
  Rng rng(99);
  auto pick = [&](int lo, int hi) { return lo + static_cast<int>(rng.next_u64() % (hi - lo + 1)); };
  const char* activations[] = {"relu6", "linear", "relu", "sigmoid"};
  for (int i = 0; i < 86; ++i) {
    const bool large = i >= 80;
    const int pixels = large ? pick(100, 300) : pick(1, 20), k = large ? pick(60, 200) : pick(1, 40);
    const int filters = large ? pick(60, 150) : pick(1, 40), ldi = k + pick(0, 3);
    const bool with_bias = pick(0, 1) == 1;
    const Activation act = activation_from_name(activations[pick(0, 3)]);
    SCOPED_TRACE(
        cat(pixels, " pixels, k ", k, ", ", filters, " filters, ldi ", ldi, with_bias ? ", bias " : " ", act.str()));
    auto in = test::random_vector(static_cast<std::size_t>(pixels) * ldi, 10 * i);
    auto w = test::random_vector(static_cast<std::size_t>(k) * filters, 10 * i + 1);
    auto bias = test::random_vector(filters, 10 * i + 2, -8, 8);
    std::vector<float> out(static_cast<std::size_t>(pixels) * filters, -1.0f);
    small_gemm(in.data(), ldi, pixels, k, w.data(), filters, with_bias ? bias.data() : nullptr, act, out.data());
    for (int p = 0; p < pixels; ++p)
      for (int f = 0; f < filters; ++f) {
        double sum = with_bias ? bias[f] : 0.0;
        for (int j = 0; j < k; ++j) sum += double(in[p * ldi + j]) * w[j * filters + f];
        ASSERT_NEAR(out[p * filters + f], act.apply_one(static_cast<float>(sum)), 1e-4)
            << "pixel " << p << " filter " << f;
      }
  }
}

// packed_gemm against a plain loop: k across its 256-row chunks, filters across its 16-filter
// panels (the last one partial; pairs of full ones share a tile with AVX-512) and panel groups,
// pixels around its tiles (6 or 12 pixels, split evenly) and blocks,
// activations clamped in registers (relu, clip) or applied after (sigmoid), folded scales, and
// parts of the panels as threads take them.
TEST(PackedGemm, MatchesPlainLoop) {
  Rng rng(98);
  auto pick = [&](int lo, int hi) { return lo + static_cast<int>(rng.next_u64() % (hi - lo + 1)); };
  const char* activations[] = {"relu", "linear", "relu6", "sigmoid"};
  for (int i = 0; i < 44; ++i) {
    // The last four: several pixel blocks, and filters in groups between chunks of k.
    const bool large = i >= 40;
    const int pixels = large ? pick(250, 300) : pick(1, 40), k = large ? pick(513, 1100) : pick(1, 700);
    const int filters = large ? pick(260, 300) : pick(1, 70), ldi = k + pick(0, 3);
    const bool with_bias = pick(0, 1) == 1, scaled = pick(0, 1) == 1, with_residual = pick(0, 2) == 0;
    const Activation act = activation_from_name(activations[pick(0, 3)]);
    float lo, hi;
    const int panels = (filters + 15) / 16;
    const bool part = act.as_clamp(lo, hi) && pick(0, 1) == 1;
    const int first_panel = part ? pick(0, panels - 1) : 0;
    const int end_panel = part ? pick(first_panel + 1, panels) : panels;
    SCOPED_TRACE(cat(pixels, " pixels, k ", k, ", ", filters, " filters, ldi ", ldi, with_bias ? ", bias" : "",
                     scaled ? ", scaled " : " ", act.str(), ", panels ", first_panel, "-", end_panel,
                     with_residual ? ", residual" : ""));
    auto in = test::random_vector(static_cast<std::size_t>(pixels) * ldi, 20 * i);
    auto w = test::random_vector(static_cast<std::size_t>(k) * filters, 20 * i + 1);
    auto bias = test::random_vector(filters, 20 * i + 2, -8, 8);
    auto scale = test::random_vector(filters, 20 * i + 3, 0.5, 2);
    auto residual = test::random_vector(static_cast<std::size_t>(pixels) * filters, 20 * i + 4, -8, 8);
    PackedWeights packed(w, k, filters);
    if (scaled) packed.scale_filters(scale);
    std::vector<float> out(static_cast<std::size_t>(pixels) * filters, -1.0f);
    packed_gemm(in.data(), ldi, pixels, packed, with_bias ? bias.data() : nullptr, act, out.data(), first_panel,
                part ? end_panel : -1, with_residual ? residual.data() : nullptr);
    for (int p = 0; p < pixels; ++p)
      for (int f = 0; f < filters; ++f) {
        if (f < 16 * first_panel || f >= 16 * end_panel) {
          ASSERT_EQ(out[p * filters + f], -1.0f) << "pixel " << p << " filter " << f << " is outside the panels";
          continue;
        }
        double sum = 0;
        for (int j = 0; j < k; ++j) sum += double(in[p * ldi + j]) * w[j * filters + f];
        if (scaled) sum *= scale[f];
        if (with_bias) sum += bias[f];
        if (with_residual) sum += residual[p * filters + f];
        ASSERT_NEAR(out[p * filters + f], act.apply_one(static_cast<float>(sum)), 1e-3) << "pixel " << p << " filter " << f;
      }
  }
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

TEST(Winograd, RandomShapesPadsAndActivations) {
  Rng rng(77);
  auto pick = [&](int lo, int hi) { return lo + static_cast<int>(rng.next_u64() % (hi - lo + 1)); };
  const char* activations[] = {"linear", "relu", "relu6", "sigmoid", "softmax"};
  for (int i = 0; i < 90; ++i) {
    WinogradCase c;
    c.kernel = i % 3 == 2 ? 5 : 3;  // F(2, 3), F(4, 3), F(2, 5)
    c.tile = i % 3 == 1 ? 4 : 2;
    c.frames = pick(1, 3);
    const int most = c.kernel - 1;
    c.pads = {pick(0, most), pick(0, most), pick(0, most), pick(0, most)};  // asymmetric, as row bands make them
    c.h = pick(std::max(1, c.kernel - c.pads.top - c.pads.bottom), 13);
    c.w = pick(std::max(1, c.kernel - c.pads.left - c.pads.right), 13);
    c.cin = pick(1, 3) == 1 ? pick(1, 8) : pick(60, 140);  // crosses the 64-channel chunks
    c.cout = pick(1, 3) == 1 ? pick(1, 8) : pick(60, 140);
    c.bias = pick(0, 1) == 1;
    c.activation = activations[pick(0, 4)];
    check_winograd(c, 5000 + i);
  }
}

TEST(Winograd, ManyTilesSpanBlocksAndFrames) {
  // Enough tiles for several blocks, with the last one partial and tiles from two frames.
  check_winograd({4, 2, 57, 43, 96, 80, {1, 1, 1, 1}, true, "relu"}, 11);
  check_winograd({2, 3, 31, 29, 70, 64, {1, 1, 1, 1}, true, "linear"}, 12);
  check_winograd({2, 2, 27, 27, 64, 192, {2, 2, 2, 2}, true, "relu", 5}, 13);  // AlexNet's second layer
}

TEST(Winograd, ScaleFiltersMatchesScaledKernel) {
  for (auto [r, tile] : {std::pair{3, 2}, {3, 4}, {5, 2}}) {
    const int cin = 5, cout = 7, pad = r / 2;
    auto kernel = test::random_vector(static_cast<std::size_t>(r) * r * cin * cout, 21);
    auto scale = test::random_vector(cout, 22, 0.5f, 2.0f);
    Winograd scaled(r, tile, kernel, cin, cout);
    scaled.scale_filters(scale);
    for (std::size_t i = 0; i < kernel.size(); ++i) kernel[i] *= scale[i % cout];
    Winograd direct(r, tile, kernel, cin, cout);
    Tensor in = test::random_tensor(1, {9, 10, cin}, 23), a(1, {9, 10, cout}), b(1, {9, 10, cout});
    scaled.forward(in.data(), 1, 9, 10, {pad, pad, pad, pad}, 9, 10, nullptr, Activation{}, a.data());
    direct.forward(in.data(), 1, 9, 10, {pad, pad, pad, pad}, 9, 10, nullptr, Activation{}, b.data());
    EXPECT_LT(test::error_vs_largest(a, b), 1e-5) << "F(" << tile << ", " << r << ")";
  }
}

// Layers with enough channels take the Winograd path inside Conv2D; same results as the reference.
TEST(Conv2D, WinogradPathMatchesReference) {
  for (auto [r, size] : {std::pair{3, 5}, {3, 14}, {3, 30}, {5, 6}, {5, 27}}) {
    for (bool same : {true, false}) {
      SCOPED_TRACE(cat(r, "x", r, " kernel, size ", size, same ? " same" : " valid"));
      const int cin = 64, cout = 96;
      Conv2DSettings s;
      s.filters = cout;
      s.kernel_h = s.kernel_w = r;
      s.padding = same ? Padding::same : Padding::valid;
      s.activation = activation_from_name("relu");
      Conv2D conv("conv", s);
      auto kernel = test::random_vector(static_cast<std::size_t>(r) * r * cin * cout, size, -0.1f, 0.1f);
      auto bias = test::random_vector(cout, size + 1);
      test::build_layer(conv, {{size, size, cin}}, {{"kernel", kernel}, {"bias", bias}});
      EXPECT_NE(conv.winograd_tile(), 0);
      auto scale = test::random_vector(cout, 7, 0.5f, 2.0f), shift = test::random_vector(cout, 8);
      conv.fold_scale_shift(scale, shift);  // a folded batch norm after the kernel was transformed
      Tensor in = test::random_tensor(2, {size, size, cin}, size + 2);
      Tensor out;
      conv.forward({&in}, out);
      Tensor expected = ref::conv2d(in, kernel, bias, cout, {r, r, 1, 1, 1, 1, same, 1});
      for (std::size_t i = 0; i < expected.size(); ++i) {
        const int c = static_cast<int>(i % cout);
        expected.data()[i] = std::max(0.0f, expected.data()[i] * scale[c] + shift[c]);
      }
      ASSERT_EQ(out.shape(), expected.shape());
      EXPECT_LT(test::error_vs_largest(out, expected), 1e-4);
    }
  }
}

// Explicit pads (ONNX, row bands) through the Winograd path.
TEST(Conv2D, WinogradPathWithExplicitPads) {
  const int cin = 64, cout = 64;
  Conv2DSettings s;
  s.filters = cout;
  s.kernel_h = s.kernel_w = 3;
  s.explicit_pads = true;
  s.pads = {0, 2, 1, 0};
  s.use_bias = false;
  Conv2D conv("conv", s);
  auto kernel = test::random_vector(9u * cin * cout, 31);
  test::build_layer(conv, {{11, 13, cin}}, {{"kernel", kernel}});
  EXPECT_NE(conv.winograd_tile(), 0);
  Tensor in = test::random_tensor(1, {11, 13, cin}, 32);
  Tensor out;
  conv.forward({&in}, out);
  Tensor expected = ref::conv2d(ref::zero_pad(in, 0, 2, 1, 0), kernel, {}, cout, {3, 3, 1, 1, 1, 1, false, 1});
  ASSERT_EQ(out.shape(), expected.shape());
  EXPECT_LT(test::error_vs_largest(out, expected), 1e-4);
}
