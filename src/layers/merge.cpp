#include "layers/merge.h"

#include <algorithm>
#include <cstring>

#include "core/error.h"
#include "core/parallel.h"

namespace chorus::layers {

Shape Elementwise::infer_shape(const std::vector<Shape>& in) {
  Shape out = in[0];
  for (const Shape& s : in)
    if (s.size() > out.size()) out = s;
  for (const Shape& s : in) {
    bool broadcast = s.h == 1 && s.w == 1 && s.c == out.c;
    if (s != out && !broadcast)
      fail_layer("input shapes ", in[0].str(), " and ", s.str(), " do not match (nor broadcast as (1, 1, c))");
  }
  return out;
}

double Elementwise::macs() const { return static_cast<double>(output_shape().size()) * (input_shapes().size() - 1); }

void Elementwise::forward(const std::vector<const Tensor*>& in, Tensor& out) const {
  const Shape& os = output_shape();
  const int frames = in[0]->frames();
  const int c = os.c;
  const std::int64_t pixels = static_cast<std::int64_t>(os.h) * os.w;
  std::size_t first = 0;
  // Start from an input of full shape (the first when out aliases it).
  const bool in_place = &out == in[0];
  if (!in_place) {
    for (std::size_t i = 0; i < in.size(); ++i)
      if (input_shapes()[i] == os) {
        first = i;
        break;
      }
    out.resize(frames, os);
  }
  // Each range of pixels gets every input and the activation while it is in cache; ranges of
  // some 16k floats go to the compute threads.
  const std::int64_t grain = std::max<std::int64_t>(1, 16384 / c);
  for (int n = 0; n < frames; ++n)
    parallel_range(pixels, grain, [&](std::int64_t p0, std::int64_t p1) {
      const std::size_t begin = static_cast<std::size_t>(p0) * c, end = static_cast<std::size_t>(p1) * c;
      float* __restrict o = out.frame(n);
      if (!in_place) std::copy(in[first]->frame(n) + begin, in[first]->frame(n) + end, o + begin);
      for (std::size_t i = 0; i < in.size(); ++i) {
        if (i == first) continue;
        const float* __restrict x = in[i]->frame(n);
        if (input_shapes()[i] == os) {
          if (op_ == ElementwiseOp::add)
            for (std::size_t j = begin; j < end; ++j) o[j] += x[j];
          else
            for (std::size_t j = begin; j < end; ++j) o[j] *= x[j];
        } else {  // (1, 1, c), broadcast over pixels
          for (std::size_t j = begin; j < end; j += c)
            for (int k = 0; k < c; ++k) {
              if (op_ == ElementwiseOp::add)
                o[j + k] += x[k];
              else
                o[j + k] *= x[k];
            }
        }
      }
      activation_.apply(o + begin, end - begin, c);
    });
}

Shape Concatenate::infer_shape(const std::vector<Shape>& in) {
  if (axis_ < 0 || axis_ > 2) fail_layer("axis ", axis_, " is not rows, columns or channels");
  Shape out = in[0];
  int* total = axis_ == 0 ? &out.h : axis_ == 1 ? &out.w : &out.c;
  *total = 0;
  for (const Shape& s : in) {
    Shape a = s, b = in[0];
    int* da = axis_ == 0 ? &a.h : axis_ == 1 ? &a.w : &a.c;
    int* db = axis_ == 0 ? &b.h : axis_ == 1 ? &b.w : &b.c;
    *total += *da;
    *da = *db = 0;
    if (a != b) fail_layer("input shapes ", in[0].str(), " and ", s.str(), " differ off the concatenation axis");
  }
  return out;
}

std::string Concatenate::describe() const { return axis_ == 0 ? "rows" : axis_ == 1 ? "columns" : "channels"; }

void Concatenate::forward(const std::vector<const Tensor*>& in, Tensor& out) const {
  const Shape& os = output_shape();
  out.resize(in[0]->frames(), os);
  // View each frame as `outer` blocks; input i contributes a run of `inner_i` floats per block.
  const std::size_t outer = axis_ == 0   ? 1
                            : axis_ == 1 ? static_cast<std::size_t>(os.h)
                                         : static_cast<std::size_t>(os.h) * os.w;
  for (int n = 0; n < in[0]->frames(); ++n) {
    float* dst = out.frame(n);
    const std::size_t out_inner = os.size() / outer;
    std::size_t offset = 0;
    for (std::size_t i = 0; i < in.size(); ++i) {
      const std::size_t inner = input_shapes()[i].size() / outer;
      const float* src = in[i]->frame(n);
      for (std::size_t b = 0; b < outer; ++b)
        std::memcpy(dst + b * out_inner + offset, src + b * inner, inner * sizeof(float));
      offset += inner;
    }
  }
}

}  // namespace chorus::layers
