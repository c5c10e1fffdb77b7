// Every kernel split across compute threads (core/parallel.h) against the reference loops, with
// 3 threads so that splits come out uneven, and the pool itself.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <cmath>
#include <mutex>
#include <set>
#include <stdexcept>
#include <thread>
#include <vector>

#include "core/parallel.h"
#include "layers/conv2d.h"
#include "layers/dense.h"
#include "layers/depthwise_conv2d.h"
#include "layers/merge.h"
#include "layers/pooling.h"
#include "reference/reference_ops.h"
#include "reference/test_util.h"

using namespace chorus;
using namespace chorus::layers;

namespace {

class ComputeThreads : public ::testing::Test {
 protected:
  void SetUp() override { set_compute_threads(3); }
  void TearDown() override { set_compute_threads(1); }
};

struct ConvCase {
  const char* path;  // which split it exercises
  int frames, h, w, cin, cout, k, stride;
  bool same;
};

}  // namespace

TEST_F(ComputeThreads, PoolRunsEveryTaskOnceAndNestedCallsInline) {
  EXPECT_EQ(parallel_threads(), 3);
  std::vector<std::atomic<int>> hits(1000);
  std::atomic<int> nested_threads{0};
  parallel_for(1000, [&](int i) {
    hits[i]++;
    if (i == 7) nested_threads = parallel_threads();
  });
  for (auto& h : hits) ASSERT_EQ(h.load(), 1);
  EXPECT_EQ(nested_threads.load(), 1);
  // Ranges: contiguous, aligned starts, covering [0, n) exactly.
  std::vector<int> covered(1001, 0);
  parallel_range(
      1001, 10,
      [&](std::int64_t a, std::int64_t b) {
        EXPECT_EQ(a % 16, 0);
        for (auto i = a; i < b; ++i) covered[i]++;
      },
      16);
  for (int c : covered) ASSERT_EQ(c, 1);
}

// A thread held up in its range (a slower or busier core) has the rest of it taken by the
// others, from the back, each piece once. The first piece of the first range waits until the
// last piece of that range has run: without stealing it would wait for itself and time out.
TEST_F(ComputeThreads, RangesOfAHeldUpThreadAreTakenByTheOthers) {
  const std::int64_t n = 300;  // 3 ranges of 100, in pieces of 25
  std::vector<std::atomic<int>> hits(n);
  std::atomic<bool> last_piece_ran{false};
  bool waited_out = false;
  parallel_range(n, 25, [&](std::int64_t a, std::int64_t b) {
    for (auto i = a; i < b; ++i) hits[i]++;
    if (a == 0) {
      const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
      while (!last_piece_ran.load() && std::chrono::steady_clock::now() < deadline)
        std::this_thread::sleep_for(std::chrono::milliseconds(1));
      waited_out = !last_piece_ran.load();
    } else if (b == 100) {
      last_piece_ran = true;
    }
  });
  for (auto& h : hits) ASSERT_EQ(h.load(), 1);
  EXPECT_FALSE(waited_out) << "no thread took the held-up range's last piece";
}

// Jobs back to back, as a model's layers run: a worker may join a job late or not at all (the
// caller takes every task it has not), and none may touch a job after its caller returned.
// Each job's counters live on the caller's stack, at the same address every time, so a stale
// task would show up as a count of 2.
TEST_F(ComputeThreads, JobsBackToBackRunEveryTaskOnce) {
  for (int job = 0; job < 20000; ++job) {
    std::atomic<int> hits[3] = {0, 0, 0};
    parallel_for(3, [&](int i) { hits[i]++; });
    for (auto& h : hits) ASSERT_EQ(h.load(), 1) << "job " << job;
  }
}

// Each thread exactly once, between and among ordinary jobs (a worker may still be on its way
// out of the last one), and inline inside a task.
TEST_F(ComputeThreads, OnEveryThreadRunsOnceOnEachThread) {
  for (int round = 0; round < 2000; ++round) {
    std::mutex mutex;
    std::set<std::thread::id> seen;
    int calls = 0;
    on_every_thread([&] {
      std::lock_guard<std::mutex> lock(mutex);
      seen.insert(std::this_thread::get_id());
      ++calls;
    });
    ASSERT_EQ(calls, 3) << "round " << round;
    ASSERT_EQ(seen.size(), 3u) << "round " << round;
    std::atomic<int> hits{0};
    parallel_for(5, [&](int) { hits++; });
    ASSERT_EQ(hits.load(), 5);
  }
  std::atomic<int> inside{0};
  parallel_for(4, [&](int) { on_every_thread([&] { inside++; }); });
  EXPECT_EQ(inside.load(), 4);
}

TEST_F(ComputeThreads, TaskExceptionReachesTheCaller) {
  EXPECT_THROW(parallel_for(50,
                            [](int i) {
                              if (i == 31) throw std::runtime_error("task 31");
                            }),
               std::runtime_error);
  std::atomic<int> after{0};
  parallel_for(10, [&](int) { after++; });  // the pool still works
  EXPECT_EQ(after.load(), 10);
}

TEST_F(ComputeThreads, ConvolutionPathsMatchReference) {
  const ConvCase cases[] = {
      {"1x1, packed_gemm split by pixels", 1, 30, 31, 300, 40, 1, 1, false},
      {"1x1, packed_gemm split by filters", 1, 5, 5, 300, 300, 1, 1, false},  // 25 pixels
      {"1x1, packed_gemm, more filters than pixels: split by filters", 1, 14, 14, 64, 320, 1, 1, false},
      {"im2col + packed_gemm, more filters than pixels: split by filters", 1, 29, 29, 40, 256, 3, 2, true},
      {"1x1, sgemm split by pixels", 1, 30, 31, 300, 24, 1, 1, false},  // k > 256 and 24 filters: neither kernel
      {"1x1, small_gemm", 2, 30, 31, 16, 40, 1, 1, false},
      {"im2col + small_gemm, a block per thread", 1, 40, 41, 3, 40, 3, 1, true},
      {"1x1, sgemm split by filters", 1, 5, 5, 300, 24, 1, 1, false},
      {"im2col + sgemm, a block per thread", 2, 45, 41, 40, 24, 3, 1, true},  // 24 filters: no Winograd
      {"im2col + sgemm, blocks shared by threads", 1, 9, 9, 40, 24, 3, 2, true},
      {"im2col + packed_gemm, a block per thread", 1, 90, 90, 40, 40, 3, 2, true},
      {"im2col + packed_gemm, blocks shared, split by pixels", 1, 45, 41, 40, 40, 3, 2, true},
      {"im2col + packed_gemm, gathered, split by filters", 1, 9, 9, 40, 200, 3, 2, true},
      {"Winograd F(4x4), blocks", 2, 57, 43, 40, 36, 3, 1, true},
      // 1104 tiles of 32 + 32 channels: each thread takes blocks of 42 through all three phases
      // (the last block short, blocks across the two frames).
      {"Winograd F(4x4), a block per thread", 2, 96, 90, 32, 32, 3, 1, true},
      {"Winograd F(2x2), small output", 1, 6, 7, 48, 40, 3, 1, false},
      // 450 tiles and a 2.4 MB transformed kernel: blocks of 32 tiles per thread.
      {"Winograd F(4x4), a block per thread, kernel beyond L2", 2, 60, 60, 128, 128, 3, 1, true},
      {"Winograd F(2x2, 5x5), blocks shared by threads", 1, 13, 13, 64, 48, 5, 1, true},
      {"Winograd F(2x2, 5x5), a block per thread", 2, 90, 80, 32, 32, 5, 1, true},
      // Few tiles and filters enough for each of 3 threads: each transforms every tile and
      // takes its own filters (13 panels, the last half full; ranges on 4 panels).
      {"Winograd F(4x4), few tiles, filters split", 2, 20, 18, 40, 200, 3, 1, true},
      {"Winograd F(2x2), few tiles, filters split", 1, 7, 7, 48, 96, 3, 1, true},
      {"Winograd F(2x2, 5x5), few tiles, filters split", 1, 13, 13, 64, 112, 5, 1, true},
  };
  std::uint64_t seed = 100;
  for (const auto& c : cases) {
    SCOPED_TRACE(c.path);
    Conv2DSettings s;
    s.filters = c.cout;
    s.kernel_h = s.kernel_w = c.k;
    s.stride_h = s.stride_w = c.stride;
    s.padding = c.same ? Padding::same : Padding::valid;
    s.activation = activation_from_name("relu");
    Conv2D conv("conv", s);
    auto kernel = test::random_vector(static_cast<std::size_t>(c.k) * c.k * c.cin * c.cout, ++seed, -0.2f, 0.2f);
    auto bias = test::random_vector(c.cout, ++seed);
    test::build_layer(conv, {{c.h, c.w, c.cin}}, {{"kernel", kernel}, {"bias", bias}});
    Tensor in = test::random_tensor(c.frames, {c.h, c.w, c.cin}, ++seed);
    Tensor out;
    conv.forward({&in}, out);
    Tensor expected = ref::conv2d(in, kernel, bias, c.cout, {c.k, c.k, c.stride, c.stride, 1, 1, c.same, 1});
    for (std::size_t i = 0; i < expected.size(); ++i) expected.data()[i] = std::max(0.0f, expected.data()[i]);
    ASSERT_EQ(out.shape(), expected.shape());
    EXPECT_LT(test::error_vs_largest(out, expected), 1e-4);
  }
}

TEST_F(ComputeThreads, DepthwiseAndPoolingRowsMatchReference) {
  for (int stride : {1, 2}) {
    DepthwiseConv2DSettings s;
    s.stride_h = s.stride_w = stride;
    s.padding = Padding::same;
    DepthwiseConv2D dw("dw", s);
    auto kernel = test::random_vector(3 * 3 * 72, 5 + stride), bias = test::random_vector(72, 6);
    test::build_layer(dw, {{57, 41, 72}}, {{"depthwise_kernel", kernel}, {"bias", bias}});
    Tensor in = test::random_tensor(2, {57, 41, 72}, 7);
    Tensor out;
    dw.forward({&in}, out);
    Tensor expected = ref::depthwise(in, kernel, bias, 1, {3, 3, stride, stride, 1, 1, true, 1});
    ASSERT_EQ(out.shape(), expected.shape());
    EXPECT_LT(max_relative_error(out, expected), 1e-5) << "stride " << stride;
  }
  for (bool is_max : {true, false}) {
    Pool2DSettings s;
    s.kind = is_max ? PoolKind::max : PoolKind::average;
    s.pool_h = s.pool_w = 3;
    s.padding = Padding::same;
    Pool2D pool("pool", s);
    test::build_layer(pool, {{61, 45, 64}});
    Tensor in = test::random_tensor(2, {61, 45, 64}, 8);
    Tensor out;
    pool.forward({&in}, out);
    Tensor expected = ref::pool2d(in, is_max, 3, 3, 2, 2, true);
    ASSERT_EQ(out.shape(), expected.shape());
    EXPECT_LT(max_relative_error(out, expected), 1e-5) << (is_max ? "max" : "average");
  }
}

TEST_F(ComputeThreads, DenseRowsAndColumnsMatchReference) {
  // One frame: stream_gemv split by rows (701 inputs: a last column outside its groups of 4);
  // a batch: sgemm.
  for (int frames : {1, 40}) {
    DenseSettings s;
    s.units = 1000;
    Dense dense("dense", s);
    auto kernel = test::random_vector(701u * 1000, 9), bias = test::random_vector(1000, 10);
    test::build_layer(dense, {{1, 1, 701}}, {{"kernel", kernel}, {"bias", bias}});
    Tensor in = test::random_tensor(frames, {1, 1, 701}, 11);
    Tensor out;
    dense.forward({&in}, out);
    Tensor expected = ref::dense(in, kernel, bias, 1000);
    ASSERT_EQ(out.shape(), expected.shape());
    EXPECT_LT(test::error_vs_largest(out, expected), 1e-5) << frames << " frame(s)";
  }
}

TEST_F(ComputeThreads, ElementwiseRangesMatchPlainLoop) {
  Elementwise add("add", ElementwiseOp::add, activation_from_name("relu"));
  test::build_layer(add, {{40, 30, 48}, {40, 30, 48}, {1, 1, 48}});
  Tensor a = test::random_tensor(2, {40, 30, 48}, 1), b = test::random_tensor(2, {40, 30, 48}, 2),
         c = test::random_tensor(2, {1, 1, 48}, 3);
  Tensor out;
  add.forward({&a, &b, &c}, out);
  ASSERT_EQ(out.size(), a.size());
  for (std::size_t i = 0; i < a.size(); ++i) {
    const int n = static_cast<int>(i / a.frame_size());
    const float expected = std::max(0.0f, a.data()[i] + b.data()[i] + c.frame(n)[i % 48]);
    ASSERT_FLOAT_EQ(out.data()[i], expected) << i;
  }
}
