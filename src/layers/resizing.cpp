#include "layers/resizing.h"

#include <algorithm>
#include <cmath>

#include "core/parallel.h"

namespace chorus::layers {

Resizing::Resizing(std::string name, int height, int width, Interpolation interpolation, Framing framing, float fill)
    : Layer(std::move(name)),
      height_(height),
      width_(width),
      interpolation_(interpolation),
      framing_(framing),
      fill_(fill) {
  if (height <= 0 || width <= 0) fail_layer("size ", height, "x", width, " is not positive");
}

Shape Resizing::infer_shape(const std::vector<Shape>& in) {
  const int h = in[0].h, w = in[0].w;
  // The window resized, in input rows and columns: [start, start + size) (Keras' arithmetic,
  // truncating as its int() does); with padding, start is negative and the window is
  // `before` fill rows, the input, and as many after.
  int row_start = 0, rows = h, col_start = 0, cols = w;
  if (framing_ == Framing::crop) {
    rows = std::clamp(static_cast<int>(static_cast<double>(w) * height_ / width_), 1, h);
    cols = std::clamp(static_cast<int>(static_cast<double>(h) * width_ / height_), 1, w);
    row_start = (h - rows) / 2;
    col_start = (w - cols) / 2;
  } else if (framing_ == Framing::pad) {
    const int pad_h = std::max(h, static_cast<int>(static_cast<double>(w) * height_ / width_));
    const int pad_w = std::max(w, static_cast<int>(static_cast<double>(h) * width_ / height_));
    const int top = (pad_h - h) / 2, left = (pad_w - w) / 2;
    if (top > 0) {  // as Keras: the rows if they need it, else the columns
      row_start = -top;
      rows = h + 2 * top;
    } else if (left > 0) {
      col_start = -left;
      cols = w + 2 * left;
    }
  }
  // Half-pixel centres: output o samples window position (o + 0.5) * in / out - 0.5
  // (bilinear), or the pixel holding (o + 0.5) * in / out (nearest).
  padded_ = false;
  const auto taps = [&](int start, int from, int limit, int to) {
    std::vector<Tap> t(to);
    const double scale = static_cast<double>(from) / to;
    const auto index = [&](int i) {
      const int at = start + i;
      if (at < 0 || at >= limit) padded_ = true;
      return at < 0 || at >= limit ? -1 : at;
    };
    for (int o = 0; o < to; ++o) {
      if (interpolation_ == Interpolation::nearest) {
        const int i = index(std::min(from - 1, static_cast<int>(std::floor((o + 0.5) * scale))));
        t[o] = {i, i, 0.0f};
      } else {
        const double x = std::max(0.0, (o + 0.5) * scale - 0.5);
        const int lo = std::min(from - 1, static_cast<int>(std::floor(x)));
        t[o] = {index(lo), index(std::min(from - 1, lo + 1)), static_cast<float>(x - lo)};
      }
    }
    return t;
  };
  rows_ = taps(row_start, rows, h, height_);
  cols_ = taps(col_start, cols, w, width_);
  return {height_, width_, in[0].c};
}

std::string Resizing::describe() const {
  return cat(height_, "x", width_, interpolation_ == Interpolation::bilinear ? " bilinear" : " nearest",
             framing_ == Framing::crop  ? ", cropped to the aspect ratio"
             : framing_ == Framing::pad ? cat(", padded to the aspect ratio with ", fill_)
                                        : std::string());
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
        if (padded_) {  // some taps read the fill: the plain loop, one value at a time
          const auto at = [&](int row, int col, int ch) {
            return row < 0 || col < 0 ? fill_ : src[(static_cast<std::size_t>(row) * is.w + col) * c + ch];
          };
          for (int xo = 0; xo < os.w; ++xo) {
            const Tap& t = cols[xo];
            float* o = dst + (static_cast<std::size_t>(y) * os.w + xo) * c;
            for (int ch = 0; ch < c; ++ch) {
              const float a = at(r.lo, t.lo, ch) + t.weight_hi * (at(r.lo, t.hi, ch) - at(r.lo, t.lo, ch));
              const float b = at(r.hi, t.lo, ch) + t.weight_hi * (at(r.hi, t.hi, ch) - at(r.hi, t.lo, ch));
              o[ch] = a + r.weight_hi * (b - a);
            }
          }
          continue;
        }
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
