#pragma once
// Elementwise activations (and softmax over channels), applied in place. Producers (conv,
// dense, batch norm, add) carry one so it runs while their output is still in cache.
#include <cstddef>
#include <limits>
#include <string>
#include <vector>

#include "tensor/tensor.h"

namespace chorus::layers {

enum class ActivationKind {
  linear,
  relu,        // Keras ReLU layer in full: max_value, negative_slope, threshold
  elu,         // alpha
  selu,
  sigmoid,
  hard_sigmoid,  // max(0, min(1, alpha * x + beta)); alpha 0.2 in Keras 2, 1/6 in Keras 3; beta 0.5
  hard_swish,    // x * max(0, min(1, x / 6 + 0.5)) (ONNX HardSwish, Keras 3 hard_silu)
  clip,          // max(min_value, min(max_value, x)) (ONNX Clip)
  tanh,
  softmax,     // over channels (the last axis)
  swish,       // x * sigmoid(x), also called silu
  gelu,        // exact (erf) form
  softplus,
  softsign,
  exponential,
};

struct Activation {
  ActivationKind kind = ActivationKind::linear;
  float alpha = 0.0f;  // relu: negative slope; elu: alpha; hard_sigmoid: slope
  float beta = 0.5f;   // hard_sigmoid: offset
  float min_value = -std::numeric_limits<float>::infinity();  // clip only
  float max_value = std::numeric_limits<float>::infinity();   // relu and clip
  float threshold = 0.0f;                                       // relu only

  bool is_linear() const { return kind == ActivationKind::linear; }
  // Whether this is max(lo, min(hi, x)) (linear, plain relu and relu6, clip), which kernels
  // apply in registers before they store; sets lo and hi when it is.
  bool as_clamp(float& lo, float& hi) const;
  // Applies to `count` values laid out as pixels of `channels` values each.
  void apply(float* data, std::size_t count, int channels) const;
  // Scalar form, for elementwise kinds (not softmax); used by the reference tests too.
  float apply_one(float x) const;
  // "relu", "relu(max=6)", "leaky_relu(0.1)"...
  std::string str() const;
};

// Activation from a Keras activation name ("relu", "relu6", "swish", ...); throws
// chorus::Error listing the supported names. `keras3` selects Keras 3's hard_sigmoid.
Activation activation_from_name(const std::string& name, bool keras3 = false);
// The names activation_from_name accepts.
std::vector<std::string> activation_names();

}  // namespace chorus::layers
