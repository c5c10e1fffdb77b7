// Batch norm, LRN, padding, cropping, flatten, reshape and merge layers against references.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>

#include "core/random.h"
#include "io/data/npy.h"
#include "layers/batch_norm.h"
#include "layers/channel_affine.h"
#include "layers/lrn.h"
#include "layers/merge.h"
#include "layers/padding.h"
#include "layers/reshape.h"
#include "layers/resizing.h"
#include "reference/reference_ops.h"
#include "reference/test_util.h"

using namespace chorus;
using namespace chorus::layers;

TEST(BatchNorm, AllFlagCombinations) {
  for (bool center : {true, false})
    for (bool scale : {true, false}) {
      BatchNorm bn("bn", {1e-3f, center, scale, {}});
      const int c = 6;
      auto gamma = test::random_vector(c, 1, 0.5, 2), beta = test::random_vector(c, 2);
      auto mean = test::random_vector(c, 3), var = test::random_vector(c, 4, 0.1, 3);
      WeightMap w{{"moving_mean", mean}, {"moving_variance", var}};
      if (center) w["beta"] = beta;
      if (scale) w["gamma"] = gamma;
      test::build_layer(bn, {{4, 5, c}}, w);
      Tensor in = test::random_tensor(2, {4, 5, c}, 5);
      Tensor out;
      bn.forward({&in}, out);
      Tensor expected = ref::batch_norm(in, scale ? gamma : std::vector<float>{}, center ? beta : std::vector<float>{},
                                        mean, var, 1e-3f);
      EXPECT_LT(max_relative_error(out, expected), 1e-5) << "center " << center << " scale " << scale;
      EXPECT_EQ(bn.weight_specs().size(), 2u + center + scale);
    }
}

TEST(BatchNorm, InPlaceGivesTheSameResult) {
  BatchNorm bn("bn", {});
  test::build_layer(bn, {{2, 2, 3}},
                    {{"gamma", {1, 2, 3}}, {"beta", {0, 1, 0}}, {"moving_mean", {0, 0, 1}}, {"moving_variance", {1, 1, 1}}});
  Tensor in = test::random_tensor(1, {2, 2, 3}, 1);
  Tensor out, same = in;
  bn.forward({&in}, out);
  bn.forward({&same}, same);
  EXPECT_EQ(max_relative_error(out, same), 0.0);
}

TEST(LRN, MatchesReference) {
  for (int radius : {0, 1, 2, 5}) {
    LRN lrn("n", {radius, 2.0f, 1e-2f, 0.75f});
    lrn.build({{3, 3, 16}});
    Tensor in = test::random_tensor(2, {3, 3, 16}, radius, -3, 3);
    Tensor out;
    lrn.forward({&in}, out);
    EXPECT_LT(max_relative_error(out, ref::lrn(in, radius, 2.0f, 1e-2f, 0.75f)), 1e-5) << radius;
  }
}

TEST(ZeroPadding2D, AsymmetricPads) {
  ZeroPadding2D pad("p", {1, 2, 0, 3});
  pad.build({{3, 4, 2}});
  Tensor in = test::random_tensor(2, {3, 4, 2}, 1);
  Tensor out;
  pad.forward({&in}, out);
  EXPECT_EQ(max_relative_error(out, ref::zero_pad(in, 1, 2, 0, 3)), 0.0);
}

TEST(Cropping2D, InvertsPadding) {
  Tensor in = test::random_tensor(2, {3, 4, 2}, 1);
  Tensor padded = ref::zero_pad(in, 2, 1, 3, 0);
  Cropping2D crop("c", {2, 1, 3, 0});
  crop.build({padded.shape()});
  Tensor out;
  crop.forward({&padded}, out);
  EXPECT_EQ(max_relative_error(out, in), 0.0);
  Cropping2D too_much("c", {2, 2, 0, 0});
  EXPECT_THROW(too_much.build({{4, 4, 1}}), Error);
}

TEST(Flatten, KerasOrderForBothDataFormats) {
  Tensor in = test::random_tensor(2, {2, 3, 4}, 1);
  Flatten last("f", false);
  last.build({in.shape()});
  Tensor out;
  last.forward({&in}, out);
  EXPECT_EQ(out.shape(), (Shape{1, 1, 24}));
  EXPECT_EQ(out.at(1, 0, 0, (1 * 3 + 2) * 4 + 3), in.at(1, 1, 2, 3));  // (h, w, c) order
  Flatten first("f", true);
  first.build({in.shape()});
  first.forward({&in}, out);
  EXPECT_EQ(out.at(1, 0, 0, (3 * 2 + 1) * 3 + 2), in.at(1, 1, 2, 3));  // (c, h, w) order
}

TEST(Identity, KeepsItsInputsShape) {
  // A band or tile of a split-spatial stage holds fewer rows and columns than the layer's shape.
  Identity id("dropout", "Dropout");
  id.build({Shape{8, 8, 3}});
  const Tensor tile = test::random_tensor(2, {3, 5, 3}, 2);
  Tensor out;
  id.forward({&tile}, out);
  EXPECT_EQ(out.shape(), (Shape{3, 5, 3}));
  EXPECT_EQ(out.at(1, 2, 4, 2), tile.at(1, 2, 4, 2));
}

TEST(Reshape, ResolvesMinusOneAndRejectsBadTargets) {
  Reshape r("r", {-1, 6});
  EXPECT_EQ(r.build({{2, 3, 4}}), (Shape{1, 4, 6}));
  Reshape bad("r", {5, -1});
  EXPECT_THROW(bad.build({{2, 3, 4}}), Error);
  Reshape two("r", {-1, -1});
  EXPECT_THROW(two.build({{2, 3, 4}}), Error);
  Reshape vec("r", {24});
  EXPECT_EQ(vec.build({{2, 3, 4}}), (Shape{1, 1, 24}));
}

TEST(Concatenate, EveryAxis) {
  for (int axis : {0, 1, 2}) {
    Shape a{3, 4, 5}, b = a, c = a;
    (axis == 0 ? b.h : axis == 1 ? b.w : b.c) = 2;
    (axis == 0 ? c.h : axis == 1 ? c.w : c.c) = 6;
    Tensor ta = test::random_tensor(2, a, 1), tb = test::random_tensor(2, b, 2), tc = test::random_tensor(2, c, 3);
    Concatenate cat_layer("c", axis);
    cat_layer.build({a, b, c});
    Tensor out;
    cat_layer.forward({&ta, &tb, &tc}, out);
    EXPECT_EQ(max_relative_error(out, ref::concat({&ta, &tb, &tc}, axis)), 0.0) << axis;
  }
  Concatenate bad("c", 2);
  EXPECT_THROW(bad.build({{3, 4, 5}, {3, 5, 5}}), Error);
}

// Every op on random shapes, each input full-size or (1, 1, c), in place and not, against a plain
// loop that folds the inputs left to right.
TEST(Elementwise, EveryOpAgainstAPlainLoop) {
  const ElementwiseOp ops[] = {ElementwiseOp::add,     ElementwiseOp::multiply, ElementwiseOp::subtract,
                               ElementwiseOp::divide,  ElementwiseOp::maximum,  ElementwiseOp::minimum,
                               ElementwiseOp::average};
  Rng rng(41);
  for (ElementwiseOp op : ops) {
    for (int trial = 0; trial < 6; ++trial) {
      const bool two = op == ElementwiseOp::subtract || op == ElementwiseOp::divide;
      const int count = two ? 2 : 2 + trial % 3;
      const Shape full{1 + static_cast<int>(rng.next_u64() % 5), 1 + static_cast<int>(rng.next_u64() % 6),
                       1 + static_cast<int>(rng.next_u64() % 9)};
      std::vector<Tensor> in;
      std::vector<Shape> shapes;
      for (int k = 0; k < count; ++k) {
        const bool broadcast = (k > 0 && (trial + k) % 2 == 0) || (k == 0 && trial % 3 == 2);
        const Shape s = broadcast ? Shape{1, 1, full.c} : full;
        // Divisors kept away from 0.
        in.push_back(test::random_tensor(2, s, 100 + trial * 10 + k, op == ElementwiseOp::divide && k == 1 ? 0.5f : -1.0f,
                                         op == ElementwiseOp::divide && k == 1 ? 2.0f : 1.0f));
        shapes.push_back(s);
      }
      bool any_full = false;
      for (const auto& s : shapes) any_full = any_full || s == full;
      if (!any_full) shapes[count - 1] = full, in[count - 1] = test::random_tensor(2, full, 7);
      Elementwise layer("e", op);
      layer.build(shapes);
      std::vector<const Tensor*> pointers;
      for (const auto& t : in) pointers.push_back(&t);
      Tensor out;
      layer.forward(pointers, out);
      ASSERT_EQ(out.shape(), full);
      for (int n = 0; n < 2; ++n)
        for (std::size_t i = 0; i < full.size(); ++i) {
          const auto at = [&](int k) {
            return static_cast<double>(in[k].shape() == full ? in[k].frame(n)[i] : in[k].frame(n)[i % full.c]);
          };
          double v = at(0);
          for (int k = 1; k < count; ++k) {
            const double x = at(k);
            switch (op) {
              case ElementwiseOp::add: case ElementwiseOp::average: v += x; break;
              case ElementwiseOp::multiply: v *= x; break;
              case ElementwiseOp::subtract: v -= x; break;
              case ElementwiseOp::divide: v /= x; break;
              case ElementwiseOp::maximum: v = std::max(v, x); break;
              case ElementwiseOp::minimum: v = std::min(v, x); break;
            }
          }
          if (op == ElementwiseOp::average) v /= count;
          ASSERT_NEAR(out.frame(n)[i], v, 1e-5 * (1 + std::fabs(v))) << layer.type() << " trial " << trial << " at " << i;
        }
      // In place, where the first input has the output's shape.
      if (in[0].shape() == full) {
        Tensor inplace = in[0];
        pointers[0] = &inplace;
        layer.forward(pointers, inplace);
        EXPECT_EQ(max_relative_error(inplace, out), 0.0) << layer.type();
      }
      // Run by run of positions (a split stage behind a reduction), and so in place.
      pointers[0] = &in[0];
      Tensor runs;
      test::forward_in_position_runs(layer, pointers, runs, trial);
      EXPECT_EQ(max_relative_error(runs, out), 0.0) << layer.type();
      if (in[0].shape() == full) {
        Tensor inplace = in[0];
        pointers[0] = &inplace;
        test::forward_in_position_runs(layer, pointers, inplace, trial);
        EXPECT_EQ(max_relative_error(inplace, out), 0.0) << layer.type();
      }
    }
  }
  Elementwise three("s", ElementwiseOp::subtract);
  EXPECT_THROW(three.build({{2, 2, 2}, {2, 2, 2}, {2, 2, 2}}), Error);
}

TEST(Elementwise, AddMultiplyAndBroadcast) {
  Tensor a = test::random_tensor(2, {3, 4, 5}, 1), b = test::random_tensor(2, {3, 4, 5}, 2);
  Tensor s = test::random_tensor(2, {1, 1, 5}, 3);
  Elementwise add("add", ElementwiseOp::add, activation_from_name("relu"));
  add.build({a.shape(), b.shape(), a.shape()});
  Tensor out;
  add.forward({&a, &b, &a}, out);
  for (std::size_t i = 0; i < out.size(); ++i)
    EXPECT_FLOAT_EQ(out.data()[i], std::max(0.0f, 2 * a.data()[i] + b.data()[i]));
  // Squeeze-and-excitation: (h, w, c) * (1, 1, c), with the broadcast input first.
  Elementwise mul("mul", ElementwiseOp::multiply);
  mul.build({s.shape(), a.shape()});
  mul.forward({&s, &a}, out);
  EXPECT_EQ(out.shape(), a.shape());
  for (int n = 0; n < 2; ++n)
    for (std::size_t i = 0; i < a.frame_size(); ++i) EXPECT_FLOAT_EQ(out.frame(n)[i], a.frame(n)[i] * s.frame(n)[i % 5]);
  Elementwise bad("add", ElementwiseOp::add);
  EXPECT_THROW(bad.build({{3, 4, 5}, {3, 4, 6}}), Error);
}

TEST(ChannelAffine, PerChannelAndScalarAgainstPlainLoops) {
  for (const Shape shape : {Shape{3, 4, 1}, Shape{5, 2, 3}, Shape{1, 1, 7}}) {
    const int c = shape.c;
    const std::vector<float> scale = test::random_vector(c, 1), offset = test::random_vector(c, 2);
    Tensor in = test::random_tensor(2, shape, 3);
    ChannelAffine per("a", "Rescaling", scale, offset), scalar("b", "Rescaling", {scale[0]}, {offset[0]});
    per.build({shape});
    scalar.build({shape});
    Tensor a, b;
    per.forward({&in}, a);
    scalar.forward({&in}, b);
    for (std::size_t i = 0; i < in.size(); ++i) {
      EXPECT_FLOAT_EQ(a.data()[i], in.data()[i] * scale[i % c] + offset[i % c]);
      EXPECT_FLOAT_EQ(b.data()[i], in.data()[i] * scale[0] + offset[0]);
    }
    Tensor inplace = in;
    per.forward({&inplace}, inplace);
    EXPECT_EQ(max_relative_error(inplace, a), 0.0);
  }
  ChannelAffine wrong("w", "Rescaling", {1, 2}, {0});
  EXPECT_THROW(wrong.build({{2, 2, 3}}), Error);
  // Normalization: (x - mean) / max(sqrt(variance), 1e-7), from its weights after adapt().
  auto norm = ChannelAffine::normalization_from_weights("n");
  norm->build({{1, 2, 2}});
  ASSERT_EQ(norm->weight_specs().size(), 3u);
  norm->set_weights({{"mean", {1.0f, -1.0f}}, {"variance", {4.0f, 0.0f}}, {"count", {10.0f}}});
  Tensor x(1, {1, 2, 2});
  x.data()[0] = 3.0f, x.data()[1] = -1.0f, x.data()[2] = 1.0f, x.data()[3] = -0.5f;
  Tensor y;
  norm->forward({&x}, y);
  EXPECT_FLOAT_EQ(y.data()[0], 1.0f);
  EXPECT_FLOAT_EQ(y.data()[1], 0.0f);
  EXPECT_FLOAT_EQ(y.data()[2], 0.0f);
  EXPECT_NEAR(y.data()[3], 0.5f / 1e-7f, 1.0f);
}

// The largest difference between a layer's output and an array PyTorch wrote (infinite when
// their sizes differ).
double largest_difference(const Tensor& out, const std::string& npy) {
  const io::NpyArray expected = io::read_npy(npy);
  if (expected.data.size() != out.size()) return std::numeric_limits<double>::infinity();
  double worst = 0;
  for (std::size_t i = 0; i < out.size(); ++i)
    worst = std::max(worst, std::abs(static_cast<double>(out.data()[i]) - expected.data[i]));
  return worst;
}

// Resizing against PyTorch's interpolate (bilinear with align_corners=False and nearest-exact:
// the half-pixel centres TensorFlow's resize uses), up and down, on a few shapes.
TEST(Resizing, BilinearAndNearestAsPyTorchInterpolates) {
  if (test::run_command("/usr/bin/python3 -c 'import torch, numpy'").exit_code != 0)
    GTEST_SKIP() << "Debian's python3-torch is not installed";
  test::TempDir dir;
  for (const auto& [from, to] :
       {std::pair<Shape, std::pair<int, int>>{{5, 7, 3}, {9, 4}}, {{8, 8, 2}, {3, 5}}, {{1, 6, 1}, {4, 6}}}) {
    Tensor in = test::random_tensor(2, from, 21);
    io::write_npy(dir.path("in.npy"), {2, from.h, from.w, from.c}, in.data());
    for (const auto interpolation : {Resizing::Interpolation::bilinear, Resizing::Interpolation::nearest}) {
      const bool bilinear = interpolation == Resizing::Interpolation::bilinear;
      Resizing layer("r", to.first, to.second, interpolation);
      layer.build({from});
      Tensor out;
      layer.forward({&in}, out);
      auto r = test::run_command(
          "/usr/bin/python3 -c \"import numpy as np, torch, sys\n"
          "x = torch.from_numpy(np.load(sys.argv[1])).permute(0, 3, 1, 2)\n"
          "y = torch.nn.functional.interpolate(x, size=(" +
          std::to_string(to.first) + ", " + std::to_string(to.second) + "), mode='" +
          (bilinear ? "bilinear', align_corners=False" : "nearest-exact'") +
          ")\n"
          "np.save(sys.argv[2], y.permute(0, 2, 3, 1).contiguous().numpy())\" " +
          dir.path("in.npy") + " " + dir.path("out.npy"));
      ASSERT_EQ(r.exit_code, 0) << r.output;
      EXPECT_LT(largest_difference(out, dir.path("out.npy")), 1e-5)
          << from.str() << " -> " << to.first << "x" << to.second << (bilinear ? " bilinear" : " nearest");
    }
  }
}

// crop_to_aspect_ratio and pad_to_aspect_ratio: the window Keras' resize takes (its arithmetic,
// written out again in Python here: a centred crop of the target's aspect ratio, or fill rows or
// columns as many on both sides), then PyTorch's interpolate on it.
TEST(Resizing, CropAndPadToTheAspectRatioAsKerasFramesThem) {
  if (test::run_command("/usr/bin/python3 -c 'import torch, numpy'").exit_code != 0)
    GTEST_SKIP() << "Debian's python3-torch is not installed";
  test::TempDir dir;
  // Wider and taller than the target (crop columns or rows; pad rows or columns), and its aspect.
  for (const auto& [from, to] :
       {std::pair<Shape, std::pair<int, int>>{{6, 11, 2}, {4, 4}}, {{9, 5, 3}, {4, 6}}, {{8, 4, 2}, {6, 3}}})
    for (const auto framing : {Resizing::Framing::crop, Resizing::Framing::pad})
      for (const auto interpolation : {Resizing::Interpolation::bilinear, Resizing::Interpolation::nearest}) {
        const bool crop = framing == Resizing::Framing::crop, bilinear = interpolation == Resizing::Interpolation::bilinear;
        SCOPED_TRACE(from.str() + " -> " + std::to_string(to.first) + "x" + std::to_string(to.second) +
                     (crop ? " crop" : " pad") + (bilinear ? " bilinear" : " nearest"));
        Tensor in = test::random_tensor(2, from, 22);
        io::write_npy(dir.path("in.npy"), {2, from.h, from.w, from.c}, in.data());
        Resizing layer("r", to.first, to.second, interpolation, framing, -0.75f);
        layer.build({from});
        Tensor out;
        layer.forward({&in}, out);
        const std::string th = std::to_string(to.first), tw = std::to_string(to.second);
        auto r = test::run_command(
            "/usr/bin/python3 -c \"import numpy as np, torch, sys\n"
            "x = np.load(sys.argv[1]); n, h, w, c = x.shape; th, tw = " + th + ", " + tw + "\n"
            "if " + (crop ? "True" : "False") + ":\n"
            "    ch = max(min(h, int(float(w * th) / tw)), 1); cw = max(min(w, int(float(h * tw) / th)), 1)\n"
            "    hs = int(float(h - ch) / 2); ws = int(float(w - cw) / 2)\n"
            "    x = x[:, hs:hs + ch, ws:ws + cw, :]\n"
            "else:\n"
            "    ph = max(h, int(float(w * th) / tw)); pw = max(w, int(float(h * tw) / th))\n"
            "    hs = int(float(ph - h) / 2); ws = int(float(pw - w) / 2)\n"
            "    if hs > 0:\n"
            "        f = np.full((n, hs, w, c), -0.75, np.float32); x = np.concatenate([f, x, f], 1)\n"
            "    elif ws > 0:\n"
            "        f = np.full((n, h, ws, c), -0.75, np.float32); x = np.concatenate([f, x, f], 2)\n"
            "y = torch.nn.functional.interpolate(torch.from_numpy(np.ascontiguousarray(x)).permute(0, 3, 1, 2), "
            "size=(th, tw), mode='" + (bilinear ? "bilinear', align_corners=False" : "nearest-exact'") + ")\n"
            "np.save(sys.argv[2], y.permute(0, 2, 3, 1).contiguous().numpy())\" " +
            dir.path("in.npy") + " " + dir.path("out.npy"));
        ASSERT_EQ(r.exit_code, 0) << r.output;
        EXPECT_LT(largest_difference(out, dir.path("out.npy")), 1e-5);
      }
}

TEST(CenterCrop, TakesTheMiddleAsKerasDoes) {
  Tensor in = test::random_tensor(1, {7, 6, 2}, 5);
  CenterCrop crop("c", 4, 3);
  EXPECT_EQ(crop.build({in.shape()}), (Shape{4, 3, 2}));
  Tensor out;
  crop.forward({&in}, out);
  // Rows start at (7 - 4) / 2 = 1, columns at (6 - 3) / 2 = 1.
  for (int y = 0; y < 4; ++y)
    for (int x = 0; x < 3; ++x)
      for (int c = 0; c < 2; ++c) EXPECT_EQ(out.at(0, y, x, c), in.at(0, y + 1, x + 1, c));
  CenterCrop too_big("c", 8, 3);
  EXPECT_THROW(too_big.build({in.shape()}), Error);
}
