#include "tensor/tensor.h"

#include <algorithm>
#include <cmath>

#include "core/error.h"

namespace chorus {

std::string Shape::str() const {
  if (d > 1) return cat("(", d, ", ", h, ", ", w, ", ", c, ")");
  if (h == 1 && w == 1) return cat("(", c, ")");
  if (h == 1) return cat("(", w, ", ", c, ")");  // a sequence: tokens, features
  return cat("(", h, ", ", w, ", ", c, ")");
}

Tensor::Tensor(int frames, Shape shape) : Tensor(frames, shape, 0.0f) {}

Tensor::Tensor(int frames, Shape shape, float fill) {
  resize(frames, shape);
  std::fill(data(), data() + size_, fill);
}

Tensor::Tensor(const Tensor& other) : frames_(other.frames_), shape_(other.shape_) {
  resize(other.frames_, other.shape_);
  std::copy(other.data(), other.data() + size_, data());
}

Tensor& Tensor::operator=(const Tensor& other) {
  if (this != &other) {
    resize(other.frames_, other.shape_);
    std::copy(other.data(), other.data() + size_, data());
  }
  return *this;
}

Tensor::Tensor(Tensor&& other) noexcept
    : frames_(other.frames_),
      shape_(other.shape_),
      data_(std::move(other.data_)),
      size_(other.size_),
      capacity_(other.capacity_) {
  other.frames_ = 0;
  other.shape_ = Shape{};
  other.size_ = other.capacity_ = 0;
}

Tensor& Tensor::operator=(Tensor&& other) noexcept {
  if (this != &other) {
    frames_ = other.frames_;
    shape_ = other.shape_;
    data_ = std::move(other.data_);
    size_ = other.size_;
    capacity_ = other.capacity_;
    other.frames_ = 0;
    other.shape_ = Shape{};
    other.size_ = other.capacity_ = 0;
  }
  return *this;
}

void Tensor::reserve(std::size_t floats) {
  if (floats <= capacity_) return;
  AlignedFloats bigger = allocate_aligned_floats(floats);
  std::copy(data(), data() + size_, bigger.get());
  data_ = std::move(bigger);
  capacity_ = floats;
}

void Tensor::resize(int frames, Shape shape) {
  CHORUS_ASSERT(frames >= 0, "tensor of ", frames, " frames");
  frames_ = frames;
  shape_ = shape;
  size_ = static_cast<std::size_t>(frames) * shape.size();
  if (size_ > capacity_) {
    data_.reset();  // free first, so the old and new buffers never coexist
    data_ = allocate_aligned_floats(size_);
    capacity_ = size_;
  }
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
    for (int y = 0; y < s.rows(); ++y)
      for (int x = 0; x < s.w; ++x) dst[(y * s.w + x) * s.c + ch] = src[(ch * s.rows() + y) * s.w + x];
}

void nhwc_to_nchw(const float* src, float* dst, Shape s) {
  for (int ch = 0; ch < s.c; ++ch)
    for (int y = 0; y < s.rows(); ++y)
      for (int x = 0; x < s.w; ++x) dst[(ch * s.rows() + y) * s.w + x] = src[(y * s.w + x) * s.c + ch];
}

}  // namespace chorus
