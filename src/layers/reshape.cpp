#include "layers/reshape.h"

#include <algorithm>

#include "core/error.h"

namespace chorus::layers {

namespace {
void copy_into(const Tensor& in, Tensor& out, Shape shape) {
  if (&out == &in) {
    out.reshape(shape);
    return;
  }
  out.resize(in.frames(), shape);
  std::copy(in.data(), in.data() + in.size(), out.data());
}
}  // namespace

bool Flatten::needs_permute() const {
  const Shape& s = input_shapes()[0];
  return channels_first_ && s.c > 1 && s.rows() * s.w > 1;
}

void Flatten::forward(const std::vector<const Tensor*>& in, Tensor& out) const {
  if (!needs_permute()) return copy_into(*in[0], out, output_shape());
  out.resize(in[0]->frames(), output_shape());
  for (int n = 0; n < in[0]->frames(); ++n) nhwc_to_nchw(in[0]->frame(n), out.frame(n), input_shapes()[0]);
}

Shape Reshape::infer_shape(const std::vector<Shape>& in) {
  if (target_.empty() || target_.size() > 3)
    fail_layer("target shape must have 1 to 3 dimensions, got ", target_.size());
  long known = 1;
  int unknown = -1;
  for (std::size_t i = 0; i < target_.size(); ++i) {
    if (target_[i] == -1) {
      if (unknown >= 0) fail_layer("target shape has more than one -1");
      unknown = static_cast<int>(i);
    } else if (target_[i] <= 0) {
      fail_layer("target dimension ", target_[i], " is not positive");
    } else {
      known *= target_[i];
    }
  }
  const long total = static_cast<long>(in[0].size());
  std::vector<int> dims = target_;
  if (unknown >= 0) {
    if (total % known != 0) fail_layer("cannot reshape ", in[0].str(), " (", total, " values) with a -1");
    dims[unknown] = static_cast<int>(total / known);
  } else if (known != total) {
    fail_layer("cannot reshape ", in[0].str(), " (", total, " values) to ", known, " values");
  }
  while (dims.size() < 3) dims.insert(dims.begin(), 1);
  return {dims[0], dims[1], dims[2]};
}

void Reshape::forward(const std::vector<const Tensor*>& in, Tensor& out) const {
  copy_into(*in[0], out, output_shape());
}

void Identity::forward(const std::vector<const Tensor*>& in, Tensor& out) const {
  copy_into(*in[0], out, in[0]->shape());  // its input's: a band or tile of a split-spatial stage is smaller
}

}  // namespace chorus::layers
