#include "layers/activation_layer.h"

#include <algorithm>

namespace chorus::layers {

double ActivationLayer::macs() const { return static_cast<double>(output_shape().size()); }

void ActivationLayer::forward(const std::vector<const Tensor*>& in, Tensor& out) const {
  if (&out != in[0]) {
    out.resize(in[0]->frames(), in[0]->shape());
    std::copy(in[0]->data(), in[0]->data() + in[0]->size(), out.data());
  }
  activation_.apply(out.data(), out.size(), out.shape().c);
}

}  // namespace chorus::layers
