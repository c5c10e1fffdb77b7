// 3-D layers (clips, NDHWC) against plain loops written here on random shapes: Conv3D with every
// padding, stride and dilation, MaxPooling3D / AveragePooling3D, the global poolings and
// ZeroPadding3D, on 1 and 3 compute threads; and 2-D layers refusing a clip.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cmath>
#include <limits>

#include "core/parallel.h"
#include "core/random.h"
#include "layers/conv2d.h"
#include "layers/layers3d.h"
#include "reference/test_util.h"

using namespace chorus;
using namespace chorus::layers;

namespace {

int pick(Rng& rng, int lo, int hi) { return lo + static_cast<int>(rng.next_u64() % (hi - lo + 1)); }

// TensorFlow's output size and leading pad on one axis.
std::pair<int, int> axis(int in, int k, int s, int dil, bool same) {
  const int eff = (k - 1) * dil + 1;
  if (!same) return {in >= eff ? (in - eff) / s + 1 : 0, 0};
  const int out = (in + s - 1) / s;
  return {out, std::max((out - 1) * s + eff - in, 0) / 2};
}

float at(const Tensor& t, int n, int z, int y, int x, int ch) {
  const Shape& s = t.shape();
  return t.frame(n)[((static_cast<std::size_t>(z) * s.h + y) * s.w + x) * s.c + ch];
}

struct Case3D {
  Shape in;
  int k[3], s[3], dil[3];
  bool same;
  int filters;
};

Case3D random_case(Rng& rng) {
  Case3D c;
  c.in = Shape{pick(rng, 3, 9), pick(rng, 3, 9), pick(rng, 1, 6), pick(rng, 2, 6)};
  c.same = rng.next_u64() % 2;
  for (int a = 0; a < 3; ++a) {
    c.k[a] = pick(rng, 1, 3);
    c.s[a] = pick(rng, 1, 2);
    c.dil[a] = c.s[a] == 1 ? pick(rng, 1, 2) : 1;
  }
  c.filters = pick(rng, 1, 7);
  return c;
}

// Conv3D as the definition reads: out[z,y,x,f] = act(b[f] + sum w[kz,ky,kx,c,f] in[...]).
Tensor reference_conv3d(const Tensor& in, const Case3D& c, const std::vector<float>& w, const std::vector<float>& b) {
  const Shape& s = in.shape();
  const int dims[3] = {s.d, s.h, s.w};
  int out[3], pad[3];
  for (int a = 0; a < 3; ++a) std::tie(out[a], pad[a]) = axis(dims[a], c.k[a], c.s[a], c.dil[a], c.same);
  Tensor o(in.frames(), Shape{out[1], out[2], c.filters, out[0]});
  for (int n = 0; n < in.frames(); ++n)
    for (int z = 0; z < out[0]; ++z)
      for (int y = 0; y < out[1]; ++y)
        for (int x = 0; x < out[2]; ++x)
          for (int f = 0; f < c.filters; ++f) {
            double sum = b[f];
            for (int kz = 0; kz < c.k[0]; ++kz)
              for (int ky = 0; ky < c.k[1]; ++ky)
                for (int kx = 0; kx < c.k[2]; ++kx) {
                  const int iz = z * c.s[0] + kz * c.dil[0] - pad[0], iy = y * c.s[1] + ky * c.dil[1] - pad[1],
                            ix = x * c.s[2] + kx * c.dil[2] - pad[2];
                  if (iz < 0 || iz >= s.d || iy < 0 || iy >= s.h || ix < 0 || ix >= s.w) continue;
                  for (int ch = 0; ch < s.c; ++ch)
                    sum += w[(((static_cast<std::size_t>(kz) * c.k[1] + ky) * c.k[2] + kx) * s.c + ch) * c.filters + f] *
                           at(in, n, iz, iy, ix, ch);
                }
            o.frame(n)[((static_cast<std::size_t>(z) * out[1] + y) * out[2] + x) * c.filters + f] =
                static_cast<float>(std::max(0.0, sum));  // relu
          }
  return o;
}

Tensor reference_pool3d(const Tensor& in, const Case3D& c, bool max) {
  const Shape& s = in.shape();
  const int dims[3] = {s.d, s.h, s.w};
  int out[3], pad[3];
  for (int a = 0; a < 3; ++a) std::tie(out[a], pad[a]) = axis(dims[a], c.k[a], c.s[a], 1, c.same);
  Tensor o(in.frames(), Shape{out[1], out[2], s.c, out[0]});
  for (int n = 0; n < in.frames(); ++n)
    for (int z = 0; z < out[0]; ++z)
      for (int y = 0; y < out[1]; ++y)
        for (int x = 0; x < out[2]; ++x)
          for (int ch = 0; ch < s.c; ++ch) {
            double acc = max ? -std::numeric_limits<double>::infinity() : 0.0;
            int cells = 0;
            for (int kz = 0; kz < c.k[0]; ++kz)
              for (int ky = 0; ky < c.k[1]; ++ky)
                for (int kx = 0; kx < c.k[2]; ++kx) {
                  const int iz = z * c.s[0] + kz - pad[0], iy = y * c.s[1] + ky - pad[1], ix = x * c.s[2] + kx - pad[2];
                  if (iz < 0 || iz >= s.d || iy < 0 || iy >= s.h || ix < 0 || ix >= s.w) continue;
                  const double v = at(in, n, iz, iy, ix, ch);
                  acc = max ? std::max(acc, v) : acc + v;
                  ++cells;
                }
            o.frame(n)[((static_cast<std::size_t>(z) * out[1] + y) * out[2] + x) * s.c + ch] =
                static_cast<float>(max ? acc : acc / cells);
          }
  return o;
}

Window3D window_of(const Case3D& c, bool dilated) {
  Window3D w;
  for (int a = 0; a < 3; ++a) {
    w.kernel[a] = c.k[a];
    w.stride[a] = c.s[a];
    w.dilation[a] = dilated ? c.dil[a] : 1;
  }
  w.padding = c.same ? Padding::same : Padding::valid;
  return w;
}

std::string describe(const Case3D& c) {
  return cat(c.in.str(), " k ", c.k[0], c.k[1], c.k[2], " s ", c.s[0], c.s[1], c.s[2], " dil ", c.dil[0], c.dil[1],
             c.dil[2], c.same ? " same" : " valid", " filters ", c.filters);
}

}  // namespace

TEST(Layers3D, Conv3DMatchesPlainLoops) {
  Rng rng(31);
  int tested = 0;
  for (int trial = 0; trial < 40; ++trial) {
    const Case3D c = random_case(rng);
    bool fits = true;
    for (int a = 0; a < 3; ++a) {
      const int dims[3] = {c.in.d, c.in.h, c.in.w};
      fits &= axis(dims[a], c.k[a], c.s[a], c.dil[a], c.same).first > 0;
    }
    if (!fits) continue;
    SCOPED_TRACE(describe(c));
    Conv3DSettings s;
    s.filters = c.filters;
    s.window = window_of(c, true);
    s.activation.kind = ActivationKind::relu;
    Conv3D conv("conv", s);
    const auto w = test::random_vector(static_cast<std::size_t>(c.k[0]) * c.k[1] * c.k[2] * c.in.c * c.filters,
                                       100 + trial);
    const auto b = test::random_vector(c.filters, 200 + trial);
    test::build_layer(conv, {c.in}, {{"kernel", w}, {"bias", b}});
    const Tensor in = test::random_tensor(2, c.in, 300 + trial);
    const Tensor expected = reference_conv3d(in, c, w, b);
    for (int threads : {1, 3}) {
      set_compute_threads(threads);
      Tensor out;
      conv.forward({&in}, out);
      ASSERT_EQ(out.shape(), expected.shape());
      EXPECT_LT(max_relative_error(out, expected), 1e-4) << threads << " threads";
    }
    set_compute_threads(1);
    ++tested;
  }
  EXPECT_GE(tested, 20);
}

TEST(Layers3D, PoolingMatchesPlainLoops) {
  Rng rng(47);
  int tested = 0;
  for (int trial = 0; trial < 40; ++trial) {
    Case3D c = random_case(rng);
    const bool max = trial % 2 == 0;
    bool fits = true;
    for (int a = 0; a < 3; ++a) {
      const int dims[3] = {c.in.d, c.in.h, c.in.w};
      fits &= axis(dims[a], c.k[a], c.s[a], 1, c.same).first > 0;
    }
    if (!fits) continue;
    SCOPED_TRACE(describe(c) + (max ? " max" : " average"));
    Pool3D pool("pool", max ? PoolKind::max : PoolKind::average, window_of(c, false));
    test::build_layer(pool, {c.in});
    const Tensor in = test::random_tensor(2, c.in, 400 + trial);
    for (int threads : {1, 3}) {
      set_compute_threads(threads);
      Tensor out;
      pool.forward({&in}, out);
      EXPECT_LT(max_relative_error(out, reference_pool3d(in, c, max)), 1e-6);
    }
    set_compute_threads(1);
    ++tested;
  }
  EXPECT_GE(tested, 20);
}

TEST(Layers3D, GlobalPoolingAndZeroPadding) {
  const Shape s{5, 4, 3, 6};
  const Tensor in = test::random_tensor(2, s, 9);
  for (PoolKind kind : {PoolKind::max, PoolKind::average}) {
    GlobalPool3D pool("gp", kind);
    test::build_layer(pool, {s});
    Tensor out;
    pool.forward({&in}, out);
    ASSERT_EQ(out.shape(), (Shape{1, 1, 3}));
    for (int n = 0; n < 2; ++n)
      for (int ch = 0; ch < 3; ++ch) {
        double acc = kind == PoolKind::max ? -1e30 : 0;
        for (int z = 0; z < s.d; ++z)
          for (int y = 0; y < s.h; ++y)
            for (int x = 0; x < s.w; ++x)
              acc = kind == PoolKind::max ? std::max<double>(acc, at(in, n, z, y, x, ch)) : acc + at(in, n, z, y, x, ch);
        if (kind == PoolKind::average) acc /= s.d * s.h * s.w;
        EXPECT_NEAR(out.frame(n)[ch], acc, 1e-5);
      }
  }
  ZeroPadding3D pad("pad", {1, 0, 0, 2, 1, 1});
  test::build_layer(pad, {s});
  EXPECT_EQ(pad.output_shape(), (Shape{7, 6, 3, 7}));
  Tensor out;
  pad.forward({&in}, out);
  for (int z = 0; z < 7; ++z)
    for (int y = 0; y < 7; ++y)
      for (int x = 0; x < 6; ++x)
        for (int ch = 0; ch < 3; ++ch) {
          const bool inside = z >= 1 && y < 5 && x >= 1 && x < 5;
          EXPECT_EQ(at(out, 1, z, y, x, ch), inside ? at(in, 1, z - 1, y, x - 1, ch) : 0.0f);
        }
}

TEST(Layers3D, ImageLayersRefuseAClip) {
  Conv2DSettings s;
  s.filters = 2;
  s.kernel_h = s.kernel_w = 3;
  Conv2D conv("c2d", s);
  EXPECT_THAT(test::error_of([&] { conv.build({Shape{8, 8, 3, 4}}); }),
              ::testing::HasSubstr("Conv2D 'c2d': takes images, sequences or vectors; its input (4, 8, 8, 3) is a clip"));
}
