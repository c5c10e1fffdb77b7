#pragma once
// float32 tensors in one layout everywhere inside Chorus: NHWC (frames, rows, columns,
// channels), channels fastest. Keras' channels_last order, so Keras kernels are used as
// stored and Flatten needs no permutation; channels_first data is converted at the edges.
// Lower-rank tensors are right-aligned: (N, d) is (N, 1, 1, d), (N, a, b) is (N, 1, a, b).
// A clip (video frames for 3-D layers) is NDHWC: `d` images of (h, w, c) back to back, so that
// its memory is an image of d x h rows, which is how the runtime moves it.
#include <cstddef>
#include <memory>
#include <string>
#include <vector>

#include "core/aligned.h"

namespace chorus {

// The shape of one frame: rows, columns, channels; and for a clip, its depth (time).
struct Shape {
  int h = 1;
  int w = 1;
  int c = 1;
  int d = 1;  // images in a clip (3-D layers); 1 for everything else

  std::size_t size() const { return static_cast<std::size_t>(d) * h * w * c; }
  // Rows in memory: a clip's images one after another.
  int rows() const { return d * h; }
  bool is_clip() const { return d > 1; }
  bool operator==(const Shape& o) const { return h == o.h && w == o.w && c == o.c && d == o.d; }
  bool operator!=(const Shape& o) const { return !(*this == o); }
  // "(d, h, w, c)" for a clip, "(h, w, c)", "(w, c)" for a sequence (one row), or "(c)" for a
  // vector, as Keras prints shapes without the batch axis.
  std::string str() const;
};

// A batch of frames of one shape. Owns its storage; moves are cheap, copies are deep.
class Tensor {
 public:
  Tensor() = default;
  Tensor(int frames, Shape shape);  // zero-filled
  Tensor(int frames, Shape shape, float fill);
  Tensor(const Tensor& other);
  Tensor& operator=(const Tensor& other);
  Tensor(Tensor&& other) noexcept;
  Tensor& operator=(Tensor&& other) noexcept;

  int frames() const { return frames_; }
  const Shape& shape() const { return shape_; }
  std::size_t frame_size() const { return shape_.size(); }
  std::size_t size() const { return size_; }
  bool empty() const { return size_ == 0; }
  // Floats the allocation holds (resize up to this many allocates nothing).
  std::size_t capacity() const { return capacity_; }

  float* data() { return data_.get(); }
  const float* data() const { return data_.get(); }
  float* frame(int n) { return data_.get() + n * frame_size(); }
  const float* frame(int n) const { return data_.get() + n * frame_size(); }

  float& at(int n, int y, int x, int ch) { return data_[index(n, y, x, ch)]; }
  float at(int n, int y, int x, int ch) const { return data_[index(n, y, x, ch)]; }

  // Changes frames and shape, reusing the allocation when it is large enough.
  // Contents are unspecified afterwards: nothing is zeroed, as every layer writes all of its
  // output and a fill would be one more pass over memory per layer.
  void resize(int frames, Shape shape);
  // Makes room for `floats` values without changing frames or shape (buffers sized at set-up).
  void reserve(std::size_t floats);
  // Same element count, new shape (Flatten, Reshape).
  void reshape(Shape shape);
  // The values as a vector (a copy).
  std::vector<float> values() const { return {data(), data() + size_}; }

 private:
  std::size_t index(int n, int y, int x, int ch) const {
    return ((static_cast<std::size_t>(n) * shape_.h + y) * shape_.w + x) * shape_.c + ch;
  }

  int frames_ = 0;
  Shape shape_;
  AlignedFloats data_;  // uninitialised on allocation, unlike a std::vector's; cache-line aligned
  std::size_t size_ = 0, capacity_ = 0;
};

// Largest |a-b| / max(1, |b|) over all elements; throws when shapes differ.
double max_relative_error(const Tensor& a, const Tensor& b);

// Converts one frame between NCHW and NHWC (channels_first models, at the edges).
void nchw_to_nhwc(const float* src, float* dst, Shape shape);
void nhwc_to_nchw(const float* src, float* dst, Shape shape);

}  // namespace chorus
