#include <gtest/gtest.h>

#include "core/error.h"
#include "core/random.h"
#include "tensor/tensor.h"

using namespace chorus;

TEST(Tensor, IndexingIsNhwc) {
  Tensor t(2, {3, 4, 5});
  t.at(1, 2, 3, 4) = 7.0f;
  EXPECT_EQ(t.data()[((1 * 3 + 2) * 4 + 3) * 5 + 4], 7.0f);
  EXPECT_EQ(t.frame(1) - t.frame(0), 60);
}

TEST(Tensor, CopiesAreDeepMovesEmptyTheSourceResizeKeepsTheAllocation) {
  Tensor a(2, {2, 3, 4}, 1.5f);
  Tensor b = a;
  b.at(0, 0, 0, 0) = 9.0f;
  EXPECT_EQ(a.at(0, 0, 0, 0), 1.5f);
  EXPECT_EQ(b.size(), a.size());
  EXPECT_EQ(b.at(1, 1, 2, 3), 1.5f);
  a = b;
  EXPECT_EQ(a.at(0, 0, 0, 0), 9.0f);
  Tensor c = std::move(b);
  EXPECT_EQ(c.at(0, 0, 0, 0), 9.0f);
  EXPECT_TRUE(b.empty());
  EXPECT_EQ(b.capacity(), 0u);
  const float* storage = c.data();
  c.resize(1, {2, 3, 4});  // smaller: same allocation
  EXPECT_EQ(c.data(), storage);
  EXPECT_EQ(c.size(), 24u);
  EXPECT_EQ(c.capacity(), 48u);
  c.resize(3, {2, 3, 4});  // larger: a new one
  EXPECT_EQ(c.size(), 72u);
  EXPECT_EQ(c.capacity(), 72u);
  EXPECT_EQ(Tensor(1, {2, 2, 2}).at(0, 1, 1, 1), 0.0f);  // the constructor zero-fills
  EXPECT_EQ(c.values().size(), 72u);
}

TEST(Tensor, NchwRoundTrip) {
  Shape s{3, 4, 5};
  std::vector<float> nhwc(s.size()), nchw(s.size()), back(s.size());
  for (std::size_t i = 0; i < nhwc.size(); ++i) nhwc[i] = static_cast<float>(i);
  nhwc_to_nchw(nhwc.data(), nchw.data(), s);
  EXPECT_EQ(nchw[(4 * 3 + 2) * 4 + 3], nhwc[(2 * 4 + 3) * 5 + 4]);  // c=4, y=2, x=3
  nchw_to_nhwc(nchw.data(), back.data(), s);
  EXPECT_EQ(back, nhwc);
}

TEST(Tensor, MaxRelativeErrorChecksShapes) {
  Tensor a(1, {2, 2, 2}, 1.0f), b(1, {2, 2, 2}, 1.0f);
  EXPECT_EQ(max_relative_error(a, b), 0.0);
  b.at(0, 1, 1, 1) = 1.5f;
  EXPECT_NEAR(max_relative_error(a, b), 1.0 / 3.0, 1e-6);
  Tensor c(1, {2, 2, 1});
  EXPECT_THROW(max_relative_error(a, c), Error);
}

TEST(Rng, DeterministicAndInRange) {
  Rng a(42), b(42), c(43);
  for (int i = 0; i < 1000; ++i) {
    float x = a.uniform();
    EXPECT_EQ(x, b.uniform());
    EXPECT_GE(x, 0.0f);
    EXPECT_LT(x, 1.0f);
  }
  EXPECT_NE(Rng(42).next_u64(), c.next_u64());
  // The exact first value is part of the contract: synthetic frames and generated weights
  // must be the same on every platform.
  EXPECT_EQ(Rng(1).next_u64(), 0x910a2dec89025cc1ull);
}
