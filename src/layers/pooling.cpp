#include "layers/pooling.h"

#include <algorithm>
#include <limits>

#include "core/error.h"
#include "core/parallel.h"
#include "layers/vec8.h"

namespace chorus::layers {

Pool2D::Pool2D(std::string name, Pool2DSettings settings) : Layer(std::move(name)), settings_(settings) {
  if (settings_.pool_h < 1 || settings_.pool_w < 1 || settings_.stride_h < 1 || settings_.stride_w < 1)
    fail_layer("pool size and strides must be positive");
}

Shape Pool2D::infer_shape(const std::vector<Shape>& in) {
  const auto& s = settings_;
  Shape out{0, 0, in[0].c};
  auto g =
      window_geometry(in[0], {s.pool_h, s.pool_w, s.stride_h, s.stride_w, 1, 1, s.padding, s.explicit_pads, s.pads});
  out.h = g.out_h;
  out.w = g.out_w;
  pads_ = g.pads;
  if (out.h <= 0 || out.w <= 0) fail_layer("pool ", s.pool_h, "x", s.pool_w, " does not fit input ", in[0].str());
  return out;
}

double Pool2D::macs() const { return static_cast<double>(output_shape().size()) * settings_.pool_h * settings_.pool_w; }

std::string Pool2D::describe() const {
  const auto& s = settings_;
  return cat(s.pool_h, "x", s.pool_w, "/", s.stride_h, s.padding == Padding::same ? " same" : " valid");
}

void Pool2D::forward(const std::vector<const Tensor*>& in, Tensor& out) const {
  const auto& s = settings_;
  const Shape& is = input_shapes()[0];
  const Shape& os = output_shape();
  const int c = is.c;
  out.resize(in[0]->frames(), os);
  const bool is_max = s.kind == PoolKind::max;
  // Rows per task: some 50k window reads, so small layers stay on one thread.
  const auto grain =
      static_cast<std::int64_t>(std::max(1.0, 5e4 / (static_cast<double>(os.w) * c * s.pool_h * s.pool_w)));
  for (int n = 0; n < in[0]->frames(); ++n) {
    const float* src = in[0]->frame(n);
    float* dst_frame = out.frame(n);
    parallel_range(os.h, grain, [&](std::int64_t first_row, std::int64_t end_row) {
      for (int oy = static_cast<int>(first_row); oy < end_row; ++oy) {
        const int y0 = oy * s.stride_h - pads_.top;
        const int ya = std::max(y0, 0), yb = std::min(y0 + s.pool_h, is.h);
        for (int ox = 0; ox < os.w; ++ox) {
          const int x0 = ox * s.stride_w - pads_.left;
          const int xa = std::max(x0, 0), xb = std::min(x0 + s.pool_w, is.w);
          float* __restrict dst = dst_frame + (static_cast<std::size_t>(oy) * os.w + ox) * c;
          if (ya >= yb || xa >= xb) {  // a window wholly in the padding
            std::fill(dst, dst + c, is_max ? -std::numeric_limits<float>::infinity() : 0.0f);
            continue;
          }
          const int count = s.count_include_pad ? s.pool_h * s.pool_w : (yb - ya) * (xb - xa);
          const float inv = 1.0f / count;
          const float* corner = src + (static_cast<std::size_t>(ya) * is.w + xa) * c;
          const std::size_t row = static_cast<std::size_t>(is.w) * c;
          // Channels by registers' worth, each kept in a register across the window's taps and
          // stored once (bench_layers BM_MaxPool/112/64/3, ResNet's 3x3 max pooling at 112x112x64: 139-170 -> 112-119
          // us).
          int ch = 0;
          for (; ch + kVecWLanes <= c; ch += kVecWLanes) {
            VecW acc = loadw(corner + ch);
            for (int y = ya; y < yb; ++y)
              for (int x = xa; x < xb; ++x) {
                if (y == ya && x == xa) continue;
                const VecW v = loadw(corner + (y - ya) * row + static_cast<std::size_t>(x - xa) * c + ch);
                acc = is_max ? (acc > v ? acc : v) : acc + v;
              }
            storew(dst + ch, is_max ? acc : acc * inv);
          }
          for (; ch < c; ++ch) {
            float acc = corner[ch];
            for (int y = ya; y < yb; ++y)
              for (int x = xa; x < xb; ++x) {
                if (y == ya && x == xa) continue;
                const float v = corner[(y - ya) * row + static_cast<std::size_t>(x - xa) * c + ch];
                acc = is_max ? std::max(acc, v) : acc + v;
              }
            dst[ch] = is_max ? acc : acc * inv;
          }
        }
      }
    });
  }
}

void pool_positions(const float* src, std::size_t positions, int channels, PoolKind kind, float* dst) {
  std::copy(src, src + channels, dst);
  for (std::size_t p = 1; p < positions; ++p) {
    const float* __restrict row = src + p * channels;
    float* __restrict out = dst;
    if (kind == PoolKind::max)
      for (int ch = 0; ch < channels; ++ch) out[ch] = std::max(out[ch], row[ch]);
    else
      for (int ch = 0; ch < channels; ++ch) out[ch] += row[ch];
  }
}

void GlobalPool2D::forward(const std::vector<const Tensor*>& in, Tensor& out) const {
  const Shape& is = input_shapes()[0];
  const int c = is.c, pixels = is.h * is.w;
  out.resize(in[0]->frames(), output_shape());
  for (int n = 0; n < in[0]->frames(); ++n) {
    float* __restrict dst = out.frame(n);
    pool_positions(in[0]->frame(n), pixels, c, kind_, dst);
    if (kind_ == PoolKind::average)
      for (int ch = 0; ch < c; ++ch) dst[ch] /= static_cast<float>(pixels);
  }
}

}  // namespace chorus::layers
