#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>

#include "core/random.h"
#include "layers/dense.h"
#include "reference/reference_ops.h"
#include "reference/test_util.h"

using namespace chorus;
using namespace chorus::layers;

TEST(Dense, RandomShapes) {
  Rng rng(5);
  auto pick = [&](int lo, int hi) { return lo + static_cast<int>(rng.next_u64() % (hi - lo + 1)); };
  for (int i = 0; i < 60; ++i) {
    const int frames = pick(1, 4), in = pick(1, 300), units = pick(1, 70);
    // Dense acts on the last axis: also try rank-3/4 inputs (rows and columns kept).
    const int h = pick(0, 2) == 0 ? pick(1, 3) : 1, w = pick(0, 2) == 0 ? pick(1, 3) : 1;
    const bool bias = pick(0, 1);
    SCOPED_TRACE(cat(frames, " x (", h, ",", w, ",", in, ") -> ", units));
    DenseSettings s{units, bias, {}};
    Dense dense("d", s);
    auto kernel = test::random_vector(static_cast<std::size_t>(in) * units, i);
    auto b = bias ? test::random_vector(units, i + 100) : std::vector<float>{};
    WeightMap weights{{"kernel", kernel}};
    if (bias) weights["bias"] = b;
    test::build_layer(dense, {{h, w, in}}, weights);
    Tensor x = test::random_tensor(frames, {h, w, in}, i + 200);
    Tensor out;
    dense.forward({&x}, out);
    EXPECT_LT(max_relative_error(out, ref::dense(x, kernel, b, units)), 1e-5);

    // In parts of positions: the same output, the parts reported in order.
    std::vector<std::int64_t> parts{0};
    const std::int64_t positions = static_cast<std::int64_t>(frames) * h * w;
    while (parts.back() < positions) parts.push_back(std::min<std::int64_t>(positions, parts.back() + pick(1, 3)));
    Tensor in_parts;
    int next = 0;
    double fraction = 0;
    dense.forward_in_parts({&x}, in_parts, parts, [&](int j, double done) {
      EXPECT_EQ(j, next++);
      EXPECT_DOUBLE_EQ(done, double(parts[j + 1]) / positions);
      fraction = done;
    });
    EXPECT_EQ(next + 1, static_cast<int>(parts.size()));
    EXPECT_DOUBLE_EQ(fraction, 1.0);
    EXPECT_LT(max_relative_error(in_parts, out), 1e-5);  // fewer rows may take another kernel
    // Run by run of positions (a split stage behind a reduction).
    Tensor runs;
    test::forward_in_position_runs(dense, {&x}, runs, i);
    EXPECT_LT(max_relative_error(runs, out), 1e-5);
  }
}

// One frame of a vector in parts of its units (a split stage reduces each part's partial sums
// while the rest computes): the reference's output, the parts reported in order with the share
// of the work done; a softmax, which needs every unit, reports its parts once all are done.
TEST(Dense, OneVectorInPartsOfItsUnits) {
  Rng rng(7);
  auto pick = [&](int lo, int hi) { return lo + static_cast<int>(rng.next_u64() % (hi - lo + 1)); };
  for (int i = 0; i < 40; ++i) {
    const int in = pick(1, 300), units = pick(1, 200);
    const bool bias = pick(0, 1), softmax = i % 5 == 4;
    SCOPED_TRACE(cat(in, " -> ", units, softmax ? " softmax" : ""));
    Dense dense("d", {units, bias, softmax ? activation_from_name("softmax") : activation_from_name("relu")});
    auto kernel = test::random_vector(static_cast<std::size_t>(in) * units, i);
    auto b = bias ? test::random_vector(units, i + 100) : std::vector<float>{};
    WeightMap weights{{"kernel", kernel}};
    if (bias) weights["bias"] = b;
    test::build_layer(dense, {{1, 1, in}}, weights);
    Tensor x = test::random_tensor(1, {1, 1, in}, i + 200);
    Tensor whole, parted;
    dense.forward({&x}, whole);
    std::vector<std::int64_t> parts{0};
    while (parts.back() < units) parts.push_back(std::min<std::int64_t>(units, parts.back() + pick(1, 60)));
    int next = 0;
    dense.forward_channels_in_parts({&x}, parted, parts, [&](int j, double done) {
      EXPECT_EQ(j, next++);
      EXPECT_DOUBLE_EQ(done, softmax ? 1.0 : double(parts[j + 1]) / units);
      // Part j is final when reported: as the reference has it.
      Tensor expected = ref::dense(x, kernel, b, units);
      if (!softmax) {
        for (std::int64_t u = parts[j]; u < parts[j + 1]; ++u)
          EXPECT_NEAR(parted.data()[u], std::max(0.0f, expected.data()[u]),
                      1e-4f * (1 + std::fabs(expected.data()[u])));
      }
    });
    EXPECT_EQ(next + 1, static_cast<int>(parts.size()));
    EXPECT_LT(max_relative_error(parted, whole), 1e-5);
  }
}

// Vectors multiplied block by block of their inputs, as a split stage gathers the slices
// (multiply_input_block, then finish_vectors): the reference's output, for unit counts below,
// at and past the 16-unit panels and the groups of four panels.
TEST(Dense, VectorsInBlocksOfTheirInputsAddUp) {
  Rng rng(9);
  auto pick = [&](int lo, int hi) { return lo + static_cast<int>(rng.next_u64() % (hi - lo + 1)); };
  for (int i = 0; i < 40; ++i) {
    const int frames = pick(1, 3), in = pick(1, 300), units = i < 4 ? 15 + i : pick(1, 200);
    SCOPED_TRACE(cat(frames, " x ", in, " -> ", units));
    Dense dense("d", {units, true, activation_from_name("relu")});
    auto kernel = test::random_vector(static_cast<std::size_t>(in) * units, i);
    auto b = test::random_vector(units, i + 100);
    test::build_layer(dense, {{1, 1, in}}, {{"kernel", kernel}, {"bias", b}});
    Tensor x = test::random_tensor(frames, {1, 1, in}, i + 200);
    std::vector<int> blocks{0};
    while (blocks.back() < in) blocks.push_back(std::min(in, blocks.back() + pick(0, 120)));
    std::vector<float> y(static_cast<std::size_t>(frames) * units, 123.0f), slice;
    for (std::size_t k = 0; k + 1 < blocks.size(); ++k) {
      const int c0 = blocks[k], c1 = blocks[k + 1];
      slice.clear();  // the block of every frame, frame after frame
      for (int f = 0; f < frames; ++f) slice.insert(slice.end(), x.frame(f) + c0, x.frame(f) + c1);
      dense.multiply_input_block(slice.data(), frames, c0, c1, y.data(), k > 0);
    }
    dense.finish_vectors(y.data(), frames);
    Tensor expected = ref::dense(x, kernel, b, units);
    for (std::size_t j = 0; j < y.size(); ++j)
      EXPECT_NEAR(y[j], std::max(0.0f, expected.data()[j]), 1e-4f * (1 + std::fabs(expected.data()[j])));
  }
}

TEST(Dense, SoftmaxActivationSumsToOne) {
  DenseSettings s{10, true, activation_from_name("softmax")};
  Dense dense("d", s);
  test::build_layer(dense, {{1, 1, 20}}, {{"kernel", test::random_vector(200, 1)}, {"bias", test::random_vector(10, 2)}});
  Tensor x = test::random_tensor(3, {1, 1, 20}, 3);
  Tensor out;
  dense.forward({&x}, out);
  for (int n = 0; n < 3; ++n) {
    float sum = 0;
    for (int i = 0; i < 10; ++i) sum += out.frame(n)[i];
    EXPECT_NEAR(sum, 1.0f, 1e-5);
  }
}

TEST(Dense, WrongWeightSizeIsAnError) {
  Dense dense("fc1", {4, true, {}});
  dense.build({{1, 1, 6}});
  try {
    dense.set_weights({{"kernel", std::vector<float>(20)}, {"bias", std::vector<float>(4)}});
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("fc1"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("(6, 4)"), std::string::npos) << e.what();
  }
  EXPECT_THROW(dense.set_weights({{"kernel", std::vector<float>(24)}}), Error);  // bias missing
}
