#include <gtest/gtest.h>

#include "core/random.h"
#include "layers/pooling.h"
#include "reference/reference_ops.h"
#include "reference/test_util.h"

using namespace chorus;
using namespace chorus::layers;

TEST(Pool2D, RandomShapes) {
  Rng rng(9);
  auto pick = [&](int lo, int hi) { return lo + static_cast<int>(rng.next_u64() % (hi - lo + 1)); };
  for (int i = 0; i < 120; ++i) {
    Pool2DSettings s;
    s.kind = pick(0, 1) ? PoolKind::max : PoolKind::average;
    s.pool_h = pick(1, 4);
    s.pool_w = pick(1, 4);
    s.stride_h = pick(1, 3);
    s.stride_w = pick(1, 3);
    s.padding = pick(0, 1) ? Padding::same : Padding::valid;
    // Channels past two registers' worth (16 floats with AVX-512), and a tail after them.
    const int h = pick(s.pool_h, 13), w = pick(s.pool_w, 13), c = pick(1, 40), frames = pick(1, 2);
    SCOPED_TRACE(cat(h, "x", w, "x", c, " pool ", s.pool_h, "x", s.pool_w, " /", s.stride_h, "x", s.stride_w,
                     s.padding == Padding::same ? " same" : " valid", s.kind == PoolKind::max ? " max" : " avg"));
    Pool2D pool("p", s);
    pool.build({{h, w, c}});
    Tensor in = test::random_tensor(frames, {h, w, c}, i);
    Tensor out;
    pool.forward({&in}, out);
    Tensor expected = ref::pool2d(in, s.kind == PoolKind::max, s.pool_h, s.pool_w, s.stride_h, s.stride_w,
                                  s.padding == Padding::same);
    ASSERT_EQ(out.shape(), expected.shape());
    EXPECT_LT(max_relative_error(out, expected), 1e-6);
  }
}

TEST(GlobalPool2D, MaxAndAverage) {
  for (bool max : {true, false}) {
    GlobalPool2D pool("g", max ? PoolKind::max : PoolKind::average);
    pool.build({{7, 5, 11}});
    Tensor in = test::random_tensor(3, {7, 5, 11}, max);
    Tensor out;
    pool.forward({&in}, out);
    EXPECT_EQ(out.shape(), (Shape{1, 1, 11}));
    EXPECT_LT(max_relative_error(out, ref::global_pool(in, max)), 1e-6);
  }
}
