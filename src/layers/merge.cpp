#include "layers/merge.h"

#include <algorithm>
#include <cstring>

#include "core/error.h"
#include "core/parallel.h"

namespace chorus::layers {

std::string Elementwise::type() const {
  switch (op_) {
    case ElementwiseOp::add: return "Add";
    case ElementwiseOp::multiply: return "Multiply";
    case ElementwiseOp::subtract: return "Subtract";
    case ElementwiseOp::divide: return "Divide";
    case ElementwiseOp::maximum: return "Maximum";
    case ElementwiseOp::minimum: return "Minimum";
    case ElementwiseOp::average: return "Average";
  }
  return "?";
}

Shape Elementwise::infer_shape(const std::vector<Shape>& in) {
  if ((op_ == ElementwiseOp::subtract || op_ == ElementwiseOp::divide) && in.size() != 2)
    fail_layer("takes 2 inputs, got ", in.size());
  if (in.size() < 2) fail_layer("takes 2 or more inputs, got ", in.size());
  Shape out = in[0];
  for (const Shape& s : in)
    if (s.size() > out.size()) out = s;
  for (const Shape& s : in) {
    bool broadcast = s.h == 1 && s.w == 1 && s.d == 1 && s.c == out.c;
    if (s != out && !broadcast)
      fail_layer("input shapes ", in[0].str(), " and ", s.str(), " do not match (nor broadcast as (1, 1, c))");
  }
  return out;
}

double Elementwise::macs() const { return static_cast<double>(output_shape().size()) * (input_shapes().size() - 1); }

namespace {

// o[j] = o[j] op x[j] over [begin, end), or with x of one pixel (c values) broadcast.
template <class Op>
void combine(float* __restrict o, const float* __restrict x, std::size_t begin, std::size_t end, bool broadcast, int c,
             Op op) {
  if (!broadcast) {
    for (std::size_t j = begin; j < end; ++j) o[j] = op(o[j], x[j]);
    return;
  }
  for (std::size_t j = begin; j < end; j += c)
    for (int k = 0; k < c; ++k) o[j + k] = op(o[j + k], x[k]);
}

void combine(ElementwiseOp op, float* o, const float* x, std::size_t begin, std::size_t end, bool broadcast, int c) {
  switch (op) {
    case ElementwiseOp::add:
    case ElementwiseOp::average: return combine(o, x, begin, end, broadcast, c, [](float a, float b) { return a + b; });
    case ElementwiseOp::multiply: return combine(o, x, begin, end, broadcast, c, [](float a, float b) { return a * b; });
    case ElementwiseOp::subtract: return combine(o, x, begin, end, broadcast, c, [](float a, float b) { return a - b; });
    case ElementwiseOp::divide: return combine(o, x, begin, end, broadcast, c, [](float a, float b) { return a / b; });
    case ElementwiseOp::maximum:
      return combine(o, x, begin, end, broadcast, c, [](float a, float b) { return std::max(a, b); });
    case ElementwiseOp::minimum:
      return combine(o, x, begin, end, broadcast, c, [](float a, float b) { return std::min(a, b); });
  }
}

}  // namespace

void Elementwise::forward(const std::vector<const Tensor*>& in, Tensor& out) const {
  if (&out != in[0]) out.resize(in[0]->frames(), output_shape());
  const Shape& os = output_shape();
  forward_positions(in, out, 0, static_cast<std::int64_t>(in[0]->frames()) * os.rows() * os.w);
}

void Elementwise::forward_positions(const std::vector<const Tensor*>& in, Tensor& out, std::int64_t first,
                                    std::int64_t last) const {
  const Shape& os = output_shape();
  const int c = os.c;
  const std::int64_t pixels = static_cast<std::int64_t>(os.rows()) * os.w;  // a clip's images too
  // Every op but Subtract and Divide is commutative: start from an input of full shape (the
  // first when out aliases it), so no broadcast is copied out first.
  const bool in_place = &out == in[0];
  const bool ordered = op_ == ElementwiseOp::subtract || op_ == ElementwiseOp::divide;
  std::size_t start = 0;
  if (!in_place && !ordered)
    for (std::size_t i = 0; i < in.size(); ++i)
      if (input_shapes()[i] == os) {
        start = i;
        break;
      }
  const bool start_broadcast = input_shapes()[start] != os;
  const float inverse_count = 1.0f / static_cast<float>(in.size());
  // Each range of pixels gets every input and the activation while it is in cache; ranges of
  // some 16k floats go to the compute threads.
  const std::int64_t grain = std::max<std::int64_t>(1, 16384 / c);
  for (std::int64_t n = first / pixels; n * pixels < last; ++n) {
    const std::int64_t from = std::max(first - n * pixels, std::int64_t{0}), to = std::min(last - n * pixels, pixels);
    const int frame = static_cast<int>(n);
    parallel_range(to - from, grain, [&](std::int64_t p0, std::int64_t p1) {
      const std::size_t begin = static_cast<std::size_t>(from + p0) * c, end = static_cast<std::size_t>(from + p1) * c;
      float* __restrict o = out.frame(frame);
      if (!in_place) {
        const float* x = in[start]->frame(frame);
        if (start_broadcast)
          for (std::size_t j = begin; j < end; j += c) std::copy(x, x + c, o + j);
        else
          std::copy(x + begin, x + end, o + begin);
      }
      for (std::size_t i = 0; i < in.size(); ++i) {
        if (i == start) continue;
        combine(op_, o, in[i]->frame(frame), begin, end, input_shapes()[i] != os, c);
      }
      if (op_ == ElementwiseOp::average)
        for (std::size_t j = begin; j < end; ++j) o[j] *= inverse_count;
      activation_.apply(o + begin, end - begin, c);
    });
  }
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
