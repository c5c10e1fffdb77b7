#include "layers/activation_layer.h"

#include <algorithm>

#include "core/parallel.h"

namespace chorus::layers {

double ActivationLayer::macs() const { return static_cast<double>(output_shape().size()); }

void ActivationLayer::forward(const std::vector<const Tensor*>& in, Tensor& out) const {
  if (&out != in[0]) {
    out.resize(in[0]->frames(), in[0]->shape());
    std::copy(in[0]->data(), in[0]->data() + in[0]->size(), out.data());
  }
  // Threads take runs of whole positions (a softmax normalises each position's channels).
  const int c = out.shape().c;
  parallel_range(static_cast<std::int64_t>(out.size() / c), std::max<std::int64_t>(1, 16384 / c),
                 [&](std::int64_t p0, std::int64_t p1) {
                   activation_.apply(out.data() + p0 * c, static_cast<std::size_t>(p1 - p0) * c, c);
                 });
}

}  // namespace chorus::layers
