#include "layers/lrn.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "core/error.h"

namespace chorus::layers {

LRN::LRN(std::string name, LRNSettings settings) : Layer(std::move(name)), settings_(settings) {
  if (settings_.depth_radius < 0) fail_layer("depth_radius must not be negative");
}

std::string LRN::describe() const {
  return cat("r ", settings_.depth_radius, " a ", settings_.alpha, " b ", settings_.beta, " k ", settings_.bias);
}

void LRN::forward(const std::vector<const Tensor*>& in, Tensor& out) const {
  const int c = output_shape().c, r = settings_.depth_radius;
  // The input's own shape: a row band of a split-spatial stage holds fewer rows than the layer's.
  out.resize(in[0]->frames(), in[0]->shape());
  const std::size_t pixels = in[0]->size() / c;
  thread_local std::vector<float> prefix;  // kept from frame to frame
  if (prefix.size() < static_cast<std::size_t>(c) + 1) prefix.resize(c + 1);
  for (std::size_t p = 0; p < pixels; ++p) {
    const float* x = in[0]->data() + p * c;
    float* y = out.data() + p * c;
    // Prefix sums of squares make every window O(1).
    prefix[0] = 0;
    for (int ch = 0; ch < c; ++ch) prefix[ch + 1] = prefix[ch] + x[ch] * x[ch];
    for (int ch = 0; ch < c; ++ch) {
      const int lo = std::max(0, ch - r), hi = std::min(c - 1, ch + r);
      const float sum = prefix[hi + 1] - prefix[lo];
      y[ch] = x[ch] * std::pow(settings_.bias + settings_.alpha * sum, -settings_.beta);
    }
  }
}

}  // namespace chorus::layers
