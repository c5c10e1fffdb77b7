#include "tensor/tensor.h"

#include <algorithm>
#include <cmath>

#include "core/error.h"

namespace chorus {

std::string Shape::str() const {
  if (h == 1 && w == 1) return cat("(", c, ")");
  return cat("(", h, ", ", w, ", ", c, ")");
}

Tensor::Tensor(int frames, Shape shape) : frames_(frames), shape_(shape), data_(frames * shape.size(), 0.0f) {}

Tensor::Tensor(int frames, Shape shape, float fill)
    : frames_(frames), shape_(shape), data_(frames * shape.size(), fill) {}

void Tensor::resize(int frames, Shape shape) {
  frames_ = frames;
  shape_ = shape;
  data_.resize(static_cast<std::size_t>(frames) * shape.size());
}

void Tensor::reshape(Shape shape) {
  CHORUS_ASSERT(shape.size() == shape_.size(), "reshape ", shape_.str(), " to ", shape.str());
  shape_ = shape;
}

double max_relative_error(const Tensor& a, const Tensor& b) {
  if (a.frames() != b.frames() || a.shape() != b.shape())
    fail("max_relative_error(): shapes differ: ", a.frames(), "x", a.shape().str(), " vs ", b.frames(), "x",
         b.shape().str());
  double worst = 0;
  for (std::size_t i = 0; i < a.size(); ++i) {
    double x = a.data()[i], y = b.data()[i];
    if (std::isnan(x) != std::isnan(y)) return INFINITY;
    double err = std::fabs(x - y) / std::max(1.0, std::fabs(y));
    worst = std::max(worst, err);
  }
  return worst;
}

void nchw_to_nhwc(const float* src, float* dst, Shape s) {
  for (int ch = 0; ch < s.c; ++ch)
    for (int y = 0; y < s.h; ++y)
      for (int x = 0; x < s.w; ++x) dst[(y * s.w + x) * s.c + ch] = src[(ch * s.h + y) * s.w + x];
}

void nhwc_to_nchw(const float* src, float* dst, Shape s) {
  for (int ch = 0; ch < s.c; ++ch)
    for (int y = 0; y < s.h; ++y)
      for (int x = 0; x < s.w; ++x) dst[(ch * s.h + y) * s.w + x] = src[(y * s.w + x) * s.c + ch];
}

}  // namespace chorus
