#include "layers/resizing.h"

#include <algorithm>
#include <cmath>

#include "core/parallel.h"

namespace chorus::layers {

Resizing::Resizing(std::string name, int height, int width, Interpolation interpolation)
    : Layer(std::move(name)), height_(height), width_(width), interpolation_(interpolation) {
  if (height <= 0 || width <= 0) fail_layer("size ", height, "x", width, " is not positive");
}

Shape Resizing::infer_shape(const std::vector<Shape>& in) {
  // Half-pixel centres: output o samples input (o + 0.5) * in / out - 0.5 (bilinear), or the
  // pixel holding (o + 0.5) * in / out (nearest).
  const auto taps = [&](int from, int to) {
    std::vector<Tap> t(to);
    const double scale = static_cast<double>(from) / to;
    for (int o = 0; o < to; ++o) {
      if (interpolation_ == Interpolation::nearest) {
        const int i = std::min(from - 1, static_cast<int>(std::floor((o + 0.5) * scale)));
        t[o] = {i, i, 0.0f};
      } else {
        const double x = std::max(0.0, (o + 0.5) * scale - 0.5);
        const int lo = std::min(from - 1, static_cast<int>(std::floor(x)));
        t[o] = {lo, std::min(from - 1, lo + 1), static_cast<float>(x - lo)};
      }
    }
    return t;
  };
  rows_ = taps(in[0].h, height_);
  cols_ = taps(in[0].w, width_);
  return {height_, width_, in[0].c};
}

std::string Resizing::describe() const {
  return cat(height_, "x", width_, interpolation_ == Interpolation::bilinear ? " bilinear" : " nearest");
}

void Resizing::forward(const std::vector<const Tensor*>& in, Tensor& out) const {
  const Tensor& x = *in[0];
  const Shape is = x.shape(), os = output_shape();
  out.resize(x.frames(), os);
  const std::vector<Tap>& rows = rows_;
  const std::vector<Tap>& cols = cols_;
  const int c = is.c;
  for (int n = 0; n < x.frames(); ++n) {
    const float* src = x.frame(n);
    float* dst = out.frame(n);
    parallel_range(os.h, 1, [&](std::int64_t y0, std::int64_t y1) {
      for (std::int64_t y = y0; y < y1; ++y) {
        const Tap& r = rows[y];
        const float* top = src + static_cast<std::size_t>(r.lo) * is.w * c;
        const float* bottom = src + static_cast<std::size_t>(r.hi) * is.w * c;
        for (int xo = 0; xo < os.w; ++xo) {
          const Tap& t = cols[xo];
          float* o = dst + (static_cast<std::size_t>(y) * os.w + xo) * c;
          for (int ch = 0; ch < c; ++ch) {
            const float a = top[t.lo * c + ch] + t.weight_hi * (top[t.hi * c + ch] - top[t.lo * c + ch]);
            const float b = bottom[t.lo * c + ch] + t.weight_hi * (bottom[t.hi * c + ch] - bottom[t.lo * c + ch]);
            o[ch] = a + r.weight_hi * (b - a);
          }
        }
      }
    });
  }
}

}  // namespace chorus::layers
