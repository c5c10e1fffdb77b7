// Tiny cases worked out by hand, so that the reference loops are checked too.
#include <gtest/gtest.h>

#include "layers/conv2d.h"
#include "layers/pooling.h"
#include "reference/reference_ops.h"
#include "reference/test_util.h"

using namespace chorus;
using namespace chorus::layers;

TEST(HandChecked, TensorFlowSamePadding) {
  // in 6, kernel 3, stride 2: out 3, total pad (3-1)*2+3-6 = 1 -> 0 before, 1 after.
  auto g = axis_geometry(6, 3, 2, 1, Padding::same);
  EXPECT_EQ(g.out, 3);
  EXPECT_EQ(g.pad_before, 0);
  EXPECT_EQ(g.pad_after, 1);
  // in 7, kernel 3, stride 2: out 4, total 2 -> 1 and 1.
  g = axis_geometry(7, 3, 2, 1, Padding::same);
  EXPECT_EQ(g.out, 4);
  EXPECT_EQ(g.pad_before, 1);
  EXPECT_EQ(g.pad_after, 1);
  // in 5, kernel 3, dilation 2 (effective 5), stride 1: total 4 -> 2 and 2.
  g = axis_geometry(5, 3, 1, 2, Padding::same);
  EXPECT_EQ(g.pad_before, 2);
  EXPECT_EQ(g.pad_after, 2);
  g = axis_geometry(5, 3, 2, 1, Padding::valid);
  EXPECT_EQ(g.out, 2);
  EXPECT_EQ(ref::tf_axis(6, 3, 2, 1, true), std::make_pair(3, 0));
}

TEST(HandChecked, Conv3x3OnOnes) {
  // A 3x3 kernel of ones over a 3x3 input of 1..9 with same padding: each output is the sum
  // of its neighbourhood. Centre = 45, corner (0,0) = 1+2+4+5 = 12.
  Conv2DSettings s;
  s.filters = 1;
  s.kernel_h = s.kernel_w = 3;
  s.padding = Padding::same;
  s.use_bias = true;
  Conv2D conv("c", s);
  test::build_layer(conv, {{3, 3, 1}}, {{"kernel", std::vector<float>(9, 1.0f)}, {"bias", {0.5f}}});
  Tensor in(1, {3, 3, 1});
  for (int i = 0; i < 9; ++i) in.data()[i] = static_cast<float>(i + 1);
  Tensor out;
  conv.forward({&in}, out);
  EXPECT_FLOAT_EQ(out.at(0, 1, 1, 0), 45.5f);
  EXPECT_FLOAT_EQ(out.at(0, 0, 0, 0), 12.5f);
  EXPECT_FLOAT_EQ(out.at(0, 2, 2, 0), 5 + 6 + 8 + 9 + 0.5f);
  Tensor expected = ref::conv2d(in, std::vector<float>(9, 1.0f), {0.5f}, 1, {3, 3, 1, 1, 1, 1, true, 1});
  EXPECT_EQ(max_relative_error(out, expected), 0.0);
}

TEST(HandChecked, AveragePoolSameExcludesPadding) {
  // 3x3 input 1..9, pool 2x2 stride 2 same: out 2x2; bottom-right window holds only 9.
  Pool2DSettings s;
  s.kind = PoolKind::average;
  s.padding = Padding::same;
  Pool2D pool("p", s);
  pool.build({{3, 3, 1}});
  Tensor in(1, {3, 3, 1});
  for (int i = 0; i < 9; ++i) in.data()[i] = static_cast<float>(i + 1);
  Tensor out;
  pool.forward({&in}, out);
  EXPECT_FLOAT_EQ(out.at(0, 0, 0, 0), (1 + 2 + 4 + 5) / 4.0f);
  EXPECT_FLOAT_EQ(out.at(0, 0, 1, 0), (3 + 6) / 2.0f);
  EXPECT_FLOAT_EQ(out.at(0, 1, 1, 0), 9.0f);
}

TEST(HandChecked, GroupedConvKeepsGroupsApart) {
  // Two groups, 1x1 kernels: output 0 sees only input 0, output 1 only input 1.
  Conv2DSettings s;
  s.filters = 2;
  s.groups = 2;
  s.use_bias = false;
  Conv2D conv("c", s);
  test::build_layer(conv, {{1, 1, 2}}, {{"kernel", {2.0f, 3.0f}}});  // (1,1,1,2)
  Tensor in(1, {1, 1, 2});
  in.data()[0] = 5;
  in.data()[1] = 7;
  Tensor out;
  conv.forward({&in}, out);
  EXPECT_FLOAT_EQ(out.data()[0], 10.0f);
  EXPECT_FLOAT_EQ(out.data()[1], 21.0f);
}
