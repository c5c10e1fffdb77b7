// Per-layer speed. Each case reports GFLOP/s (2 x multiply-adds per second) so kernels can be
// compared with the sgemm case, which is what this core can do at best.
#include <benchmark/benchmark.h>

#include <cstdlib>

#include "core/parallel.h"
#include "core/random.h"
#include "core/threads.h"
#include "layers/conv2d.h"
#include "layers/dense.h"
#include "layers/depthwise_conv2d.h"
#include "layers/gemm.h"
#include "layers/packed_gemm.h"
#include "layers/pooling.h"
#include "layers/small_gemm.h"
#include "layers/winograd.h"

using namespace chorus;
using namespace chorus::layers;

namespace {

std::vector<float> noise(std::size_t n, std::uint64_t seed) {
  Rng rng(seed);
  std::vector<float> v(n);
  for (auto& x : v) x = rng.uniform(-1, 1);
  return v;
}

Tensor noise_tensor(Shape s) {
  Tensor t(1, s);
  auto v = noise(t.size(), 3);
  std::copy(v.begin(), v.end(), t.data());
  return t;
}

// Shown as "GFLOP=x/s": 2 x multiply-adds per iteration, as a rate.
void report(benchmark::State& state, double macs) {
  state.counters["GFLOP"] = benchmark::Counter(2.0 * macs / 1e9, benchmark::Counter::kIsIterationInvariantRate);
}

// sgemm of the shape VGG16's block-3 convolutions produce (M=256, K=2304, N=3136).
void BM_Sgemm(benchmark::State& state) {
  const int m = state.range(0), k = state.range(1), n = state.range(2);
  auto a = noise(static_cast<std::size_t>(m) * k, 1), b = noise(static_cast<std::size_t>(k) * n, 2);
  std::vector<float> c(static_cast<std::size_t>(m) * n);
  for (auto _ : state) {
    gemm(m, n, k, a.data(), m, b.data(), k, c.data(), m);
    benchmark::DoNotOptimize(c.data());
  }
  report(state, double(m) * n * k);
}
BENCHMARK(BM_Sgemm)
    ->Args({256, 2304, 3136})
    ->Args({512, 4608, 784})
    ->Args({64, 576, 50176})
    ->Unit(benchmark::kMillisecond);

// A 1x1 convolution's product with bias and ReLU by each kernel, to place prefer_small_gemm's
// and prefer_packed_gemm's limits: args are pixels, k (input channels), filters, kernel
// (0 sgemm + epilogue pass, 1 small_gemm, 2 packed_gemm).
void BM_PointwiseKernel(benchmark::State& state) {
  const int pixels = state.range(0), k = state.range(1), filters = state.range(2);
  const int kernel = state.range(3);
  auto in = noise(static_cast<std::size_t>(pixels) * k, 1), w = noise(static_cast<std::size_t>(k) * filters, 2);
  const PackedWeights packed(w, k, filters);
  auto bias = noise(filters, 3);
  std::vector<float> out(static_cast<std::size_t>(pixels) * filters);
  const Activation relu = activation_from_name("relu");
  for (auto _ : state) {
    if (kernel == 1) {
      small_gemm(in.data(), k, pixels, k, w.data(), filters, bias.data(), relu, out.data());
    } else if (kernel == 2) {
      packed_gemm(in.data(), k, pixels, packed, bias.data(), relu, out.data());
    } else {
      gemm(filters, pixels, k, w.data(), filters, in.data(), k, out.data(), filters);
      for (int p = 0; p < pixels; ++p)
        for (int f = 0; f < filters; ++f) out[static_cast<std::size_t>(p) * filters + f] += bias[f];
      relu.apply(out.data(), out.size(), filters);
    }
    benchmark::DoNotOptimize(out.data());
  }
  report(state, double(pixels) * k * filters);
}
BENCHMARK(BM_PointwiseKernel)
    ->ArgsProduct({{12544}, {16}, {96}, {0, 1, 2}})  // MobileNetV2 expansion, 112x112
    ->ArgsProduct({{3136}, {144}, {24}, {0, 1, 2}})  // projection, 56x56
    ->ArgsProduct({{784}, {32, 64}, {192, 384}, {0, 1, 2}})
    ->ArgsProduct({{784}, {192}, {64}, {0, 1, 2}})
    ->ArgsProduct({{196}, {384, 576}, {96}, {0, 1, 2}})
    ->ArgsProduct({{196}, {96}, {576}, {0, 1, 2}})
    ->ArgsProduct({{49}, {160, 960}, {960, 320}, {0, 1, 2}})
    ->ArgsProduct({{3136}, {64, 256}, {64, 256}, {0, 1, 2}})  // ResNet-50 layer 1
    ->ArgsProduct({{784}, {128, 512}, {512, 128}, {0, 2}})     // ResNet-50 layer 2
    ->ArgsProduct({{196}, {256, 1024}, {1024, 256}, {0, 2}})   // layer 3
    ->ArgsProduct({{49}, {512, 2048}, {2048, 512}, {0, 2}})    // layer 4
    ->ArgsProduct({{49, 196}, {4608}, {512}, {0, 2}})          // 3x3 512 through im2col
    ->Unit(benchmark::kMicrosecond);

// In a model a layer's output buffer is cold: another layer's weights and activations went
// through the cache since it was last written. These cases write to kColdBuffers outputs in
// turn (tens of MB, past this machine's share of L3), as a model's layers do.
constexpr int kColdBuffers = 32;

// packed_gemm with cold outputs: args are pixels, k, filters.
void BM_PointwiseKernelColdOutput(benchmark::State& state) {
  const int pixels = state.range(0), k = state.range(1), filters = state.range(2);
  auto in = noise(static_cast<std::size_t>(pixels) * k, 1), w = noise(static_cast<std::size_t>(k) * filters, 2);
  const PackedWeights packed(w, k, filters);
  auto bias = noise(filters, 3);
  std::vector<std::vector<float>> outs(kColdBuffers, std::vector<float>(static_cast<std::size_t>(pixels) * filters));
  const Activation relu = activation_from_name("relu");
  int next = 0;
  for (auto _ : state) {
    float* out = outs[next++ % kColdBuffers].data();
    packed_gemm(in.data(), k, pixels, packed, bias.data(), relu, out);
    benchmark::DoNotOptimize(out);
  }
  report(state, double(pixels) * k * filters);
}
BENCHMARK(BM_PointwiseKernelColdOutput)
    ->Args({3136, 64, 256})  // ResNet-50 layer 1 (tiles over all panels)
    ->Args({3136, 64, 64})
    ->Args({784, 128, 512})  // layer 2
    ->Args({784, 512, 128})
    ->Args({196, 256, 1024})  // layer 3
    ->Args({49, 512, 2048})   // layer 4
    ->Unit(benchmark::kMicrosecond);

// packed_gemm with cold weights and outputs: args are pixels, k, filters. The weights of a
// model's small layers come from L3 or memory on every frame, as here from kColdBuffers copies
// in turn (MobileNetV2's 7x7 layers, ResNet-50's layer 4).
void BM_PointwiseKernelColdWeights(benchmark::State& state) {
  const int pixels = state.range(0), k = state.range(1), filters = state.range(2);
  auto in = noise(static_cast<std::size_t>(pixels) * k, 1), w = noise(static_cast<std::size_t>(k) * filters, 2);
  std::vector<PackedWeights> packed;
  for (int i = 0; i < kColdBuffers; ++i) packed.emplace_back(w, k, filters);
  auto bias = noise(filters, 3);
  std::vector<std::vector<float>> outs(kColdBuffers, std::vector<float>(static_cast<std::size_t>(pixels) * filters));
  const Activation relu = activation_from_name("relu");
  int next = 0;
  for (auto _ : state) {
    const int b = next++ % kColdBuffers;
    packed_gemm(in.data(), k, pixels, packed[b], bias.data(), relu, outs[b].data());
    benchmark::DoNotOptimize(outs[b].data());
  }
  report(state, double(pixels) * k * filters);
}
BENCHMARK(BM_PointwiseKernelColdWeights)
    ->Args({49, 960, 320})   // MobileNetV2's last projection
    ->Args({49, 320, 1280})  // and last 1x1
    ->Args({49, 160, 960})   // expansions at 7x7
    ->Args({196, 384, 96})   // a projection at 14x14
    ->Args({49, 2048, 512})  // ResNet-50 layer 4
    ->Args({49, 4608, 512})  // and its 3x3 layers through im2col
    ->Unit(benchmark::kMicrosecond);

// Conv2D: args are input size, channels in, channels out, kernel, stride.
void BM_Conv2D(benchmark::State& state) {
  Conv2DSettings s;
  const int size = state.range(0), cin = state.range(1);
  s.filters = state.range(2);
  s.kernel_h = s.kernel_w = state.range(3);
  s.stride_h = s.stride_w = state.range(4);
  s.padding = Padding::same;
  s.activation = activation_from_name("relu");
  Conv2D conv("conv", s);
  conv.build({{size, size, cin}});
  conv.set_weights({{"kernel", noise(static_cast<std::size_t>(s.kernel_h) * s.kernel_w * cin * s.filters, 1)},
                    {"bias", noise(s.filters, 2)}});
  Tensor in = noise_tensor({size, size, cin}), out;
  for (auto _ : state) {
    conv.forward({&in}, out);
    benchmark::DoNotOptimize(out.data());
  }
  report(state, conv.macs());
}
BENCHMARK(BM_Conv2D)
    ->Args({224, 64, 64, 3, 1})    // VGG16 block1_conv2
    ->Args({56, 256, 256, 3, 1})   // VGG16 block3
    ->Args({28, 512, 512, 3, 1})   // VGG16 block4
    ->Args({14, 512, 512, 3, 1})   // VGG16 block5
    ->Args({7, 512, 512, 3, 1})    // ResNet-50 layer4
    ->Args({56, 64, 64, 3, 1})     // ResNet-18 layer1
    ->Args({56, 64, 256, 1, 1})    // ResNet-50 1x1 expand
    ->Args({14, 256, 1024, 1, 1})  // ResNet-50 layer3 1x1 expand
    ->Args({112, 16, 96, 1, 1})    // MobileNetV2 block 2 expand (small k: small_gemm)
    ->Args({56, 144, 24, 1, 1})    // MobileNetV2 block 3 projection (few filters: small_gemm)
    ->Args({224, 3, 32, 3, 2})     // MobileNetV2 first conv (k = 27: im2col + small_gemm)
    ->Args({227, 3, 96, 11, 4})    // AlexNet conv1
    ->Args({224, 3, 64, 7, 2})     // ResNet conv1
    ->Args({27, 64, 192, 5, 1})    // AlexNet features.3 (Winograd F(2x2, 5x5))
    ->Unit(benchmark::kMillisecond);

// Winograd alone, to compare tiles on one shape: args are input size, channels in, channels out,
// tile (2 or 4) and kernel size (3 or 5). GFLOP/s counts the direct convolution's multiply-adds.
void BM_Winograd(benchmark::State& state) {
  const int size = state.range(0), cin = state.range(1), cout = state.range(2), r = state.range(4), pad = r / 2;
  Winograd wino(r, state.range(3), noise(static_cast<std::size_t>(r) * r * cin * cout, 1), cin, cout);
  auto bias = noise(cout, 2);
  Tensor in = noise_tensor({size, size, cin}), out(1, {size, size, cout});
  const Activation relu = activation_from_name("relu");
  for (auto _ : state) {
    wino.forward(in.data(), 1, size, size, {pad, pad, pad, pad}, size, size, bias.data(), relu, out.data());
    benchmark::DoNotOptimize(out.data());
  }
  report(state, double(r) * r * size * size * cin * cout);
}
BENCHMARK(BM_Winograd)
    ->ArgsProduct({{224}, {64}, {64}, {2, 4}, {3}})
    ->ArgsProduct({{56}, {64, 256}, {64, 256}, {2, 4}, {3}})
    ->ArgsProduct({{28, 14}, {512}, {512}, {2, 4}, {3}})
    ->Args({112, 64, 128, 4, 3})  // VGG16 block2's first layer
    ->Args({56, 128, 256, 4, 3})  // VGG16 block3's first layer
    ->Args({28, 256, 512, 2, 3})  // VGG16 block4's first layer
    ->Args({7, 512, 512, 2, 3})   // ResNet-50 layer4: too small for F(4x4)
    ->Args({27, 64, 192, 2, 5})   // AlexNet's 5x5 layer
    ->Args({28, 128, 128, 4, 3})  // ResNet-50 layer2 (49 tiles)
    ->Args({14, 256, 256, 2, 3})  // ResNet-50 layer3 (49 tiles)
    ->Unit(benchmark::kMillisecond);

// DepthwiseConv2D 3x3: args are input size, channels, stride; outputs go to `buffers` tensors
// in turn (kColdBuffers: as cold as in a model).
void run_depthwise(benchmark::State& state, int buffers) {
  DepthwiseConv2DSettings s;
  const int size = state.range(0), c = state.range(1);
  s.stride_h = s.stride_w = state.range(2);
  s.padding = Padding::same;
  DepthwiseConv2D dw("dw", s);
  dw.build({{size, size, c}});
  dw.set_weights({{"depthwise_kernel", noise(9 * c, 1)}, {"bias", noise(c, 2)}});
  Tensor in = noise_tensor({size, size, c});
  std::vector<Tensor> outs(buffers);
  int next = 0;
  for (auto _ : state) {
    Tensor& out = outs[next++ % buffers];
    dw.forward({&in}, out);
    benchmark::DoNotOptimize(out.data());
  }
  report(state, dw.macs());
}
void BM_DepthwiseConv2D(benchmark::State& state) { run_depthwise(state, 1); }
void BM_DepthwiseConv2DColdOutput(benchmark::State& state) { run_depthwise(state, kColdBuffers); }
// MobileNetV2's shapes, for both.
void mobilenet_depthwise_shapes(benchmark::internal::Benchmark* b) {
  for (const auto& shape : std::vector<std::vector<std::int64_t>>{
           {112, 32, 1}, {112, 96, 2}, {56, 144, 1}, {56, 144, 2}, {28, 192, 1}, {14, 576, 1}})
    b->Args(shape);
  b->Unit(benchmark::kMicrosecond);
}
BENCHMARK(BM_DepthwiseConv2D)->Apply(mobilenet_depthwise_shapes);
BENCHMARK(BM_DepthwiseConv2DColdOutput)->Apply(mobilenet_depthwise_shapes);

void BM_Dense(benchmark::State& state) {
  const int in = state.range(0), units = state.range(1);
  Dense dense("fc", {units, true, activation_from_name("relu")});
  dense.build({{1, 1, in}});
  dense.set_weights({{"kernel", noise(static_cast<std::size_t>(in) * units, 1)}, {"bias", noise(units, 2)}});
  Tensor x = noise_tensor({1, 1, in}), out;
  for (auto _ : state) {
    dense.forward({&x}, out);
    benchmark::DoNotOptimize(out.data());
  }
  report(state, dense.macs());
  state.counters["weight_GB"] =
      benchmark::Counter(4.0 * in * units / 1e9, benchmark::Counter::kIsIterationInvariantRate);
}
BENCHMARK(BM_Dense)->Args({25088, 4096})->Args({4096, 4096})->Args({4096, 1000})->Unit(benchmark::kMillisecond);

// Max pooling of `pool` x `pool`, stride 2: 2 unpadded (VGG's), 3 padded "same" (ResNet's
// after its first layer).
void BM_MaxPool(benchmark::State& state) {
  Pool2DSettings s;
  s.pool_h = s.pool_w = static_cast<int>(state.range(2));
  if (s.pool_h == 3) s.padding = Padding::same;
  const int size = state.range(0), c = state.range(1);
  Pool2D pool("pool", s);
  pool.build({{size, size, c}});
  Tensor in = noise_tensor({size, size, c}), out;
  for (auto _ : state) {
    pool.forward({&in}, out);
    benchmark::DoNotOptimize(out.data());
  }
  state.SetBytesProcessed(state.iterations() * in.size() * 4);
}
BENCHMARK(BM_MaxPool)->Args({224, 64, 2})->Args({28, 512, 2})->Args({112, 64, 3})->Unit(benchmark::kMicrosecond);

}  // namespace

// Every case on one core, as one compute thread of a rank: OpenBLAS would otherwise take all
// cores for BM_Sgemm and the sgemm baselines (3136 x 64 -> 256 through sgemm: 86 GFLOP/s on this
// machine's 2 cores, 48 on one). OPENBLAS_NUM_THREADS, where set, decides instead (bench/compare
// sets it for its 2-thread sgemm rate). CHORUS_BENCH_THREADS=N runs the layer cases on N
// compute threads, as `chorus run --threads N` would, to see how each scales.
int main(int argc, char** argv) {
  if (const char* n = std::getenv("CHORUS_BENCH_THREADS"))
    set_compute_threads(std::atoi(n));
  else if (!std::getenv("OPENBLAS_NUM_THREADS"))
    set_compute_threads(1);
  // BM_Sgemm's rate depends on the kernels OpenBLAS picked for this CPU (core/threads.h).
  benchmark::AddCustomContext("blas", chorus::blas_kernels());
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
