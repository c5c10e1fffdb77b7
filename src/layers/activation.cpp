#include "layers/activation.h"

#include <algorithm>
#include <cmath>

#include "core/error.h"
#include "layers/vec_math.h"

namespace chorus::layers {

namespace {

constexpr float kSeluAlpha = 1.6732632423543772f;
constexpr float kSeluScale = 1.0507009873554805f;

float sigmoid(float x) { return 1.0f / (1.0f + std::exp(-x)); }

void softmax_rows(float* data, std::size_t count, int channels) {
  for (std::size_t p = 0; p + channels <= count; p += channels) softmax(data + p, channels);
}

// f over every value, a vector at a time (the tail padded with zeros).
template <class F>
void vector_rows(float* data, std::size_t count, F f) {
  std::size_t i = 0;
  for (; i + kVecWLanes <= count; i += kVecWLanes) storew(data + i, f(loadw(data + i)));
  if (i < count) {
    float tail[kVecWLanes] = {};
    std::copy(data + i, data + count, tail);
    storew(tail, f(loadw(tail)));
    std::copy(tail, tail + (count - i), data + i);
  }
}

// GELU's erf in vector registers: Abramowitz and Stegun 7.1.26 (|error| < 1.5e-7), with
// exp_nonpositive (vec_math.h). libm's erff per element cost a transformer's MLP as much as a
// tenth of its matrix products (ViT-B/16: 7.3 M calls a frame).
VecW gelu_vec(VecW x) {
  const VecW z = x * 0.70710678118654752f;
  const VecW a = z < 0.0f ? -z : z;
  const VecW t = 1.0f / (1.0f + 0.3275911f * a);
  VecW poly = VecW{} + 1.061405429f;
  poly = poly * t - 1.453152027f;
  poly = poly * t + 1.421413741f;
  poly = poly * t - 0.284496736f;
  poly = poly * t + 0.254829592f;
  const VecW erf_a = 1.0f - poly * t * exp_nonpositive(-a * a);
  const VecW erf = z < 0.0f ? -erf_a : erf_a;
  return 0.5f * x * (1.0f + erf);
}

// sigmoid(x) = 1 / (1 + exp(-x)) from exp(-|x|), which never overflows: for x < 0 it is
// e / (1 + e). libm's expf per element made a SiLU network's sigmoids over half its time.
VecW sigmoid_vec(VecW x) {
  const VecW a = x < 0.0f ? -x : x;
  const VecW e = exp_nonpositive(-a);
  const VecW positive = 1.0f / (1.0f + e);
  return x < 0.0f ? e * positive : positive;
}


}  // namespace

float Activation::apply_one(float x) const {
  switch (kind) {
    case ActivationKind::linear: return x;
    case ActivationKind::relu:
      if (x >= max_value) return max_value;
      if (x >= threshold) return x;
      return alpha * (x - threshold);
    case ActivationKind::elu: return x > 0 ? x : alpha * (std::exp(x) - 1.0f);
    case ActivationKind::selu: return kSeluScale * (x > 0 ? x : kSeluAlpha * (std::exp(x) - 1.0f));
    case ActivationKind::sigmoid: return sigmoid(x);
    case ActivationKind::hard_sigmoid: return std::min(1.0f, std::max(0.0f, alpha * x + beta));
    case ActivationKind::hard_swish: return x * std::min(1.0f, std::max(0.0f, x * (1.0f / 6.0f) + 0.5f));
    case ActivationKind::clip: return std::min(max_value, std::max(min_value, x));
    case ActivationKind::tanh: return std::tanh(x);
    case ActivationKind::swish: return x * sigmoid(x);
    case ActivationKind::gelu: return 0.5f * x * (1.0f + std::erf(x * 0.70710678118f));
    case ActivationKind::softplus: return x > 20 ? x : std::log1p(std::exp(x));
    case ActivationKind::softsign: return x / (1.0f + std::fabs(x));
    case ActivationKind::exponential: return std::exp(x);
    case ActivationKind::softmax: break;
  }
  CHORUS_ASSERT(false, "apply_one() on softmax");
}

bool Activation::as_clamp(float& lo, float& hi) const {
  if (kind == ActivationKind::linear || kind == ActivationKind::clip ||
      (kind == ActivationKind::relu && alpha == 0.0f && threshold == 0.0f)) {
    lo = kind == ActivationKind::linear ? -std::numeric_limits<float>::infinity()
                                        : kind == ActivationKind::relu ? 0.0f : min_value;
    hi = kind == ActivationKind::linear ? std::numeric_limits<float>::infinity() : max_value;
    return true;
  }
  return false;
}

void Activation::apply(float* data, std::size_t count, int channels) const {
  switch (kind) {
    case ActivationKind::linear: return;
    case ActivationKind::softmax: softmax_rows(data, count, channels); return;
    case ActivationKind::relu:
      // The plain relu is by far the most common: give the compiler a loop it vectorises.
      if (alpha == 0.0f && threshold == 0.0f) {
        const float top = max_value;
        for (std::size_t i = 0; i < count; ++i) data[i] = std::min(std::max(data[i], 0.0f), top);
        return;
      }
      break;
    case ActivationKind::clip: {  // ONNX's ReLU6 (MobileNetV2) is a Clip
      const float lo = min_value, hi = max_value;
      for (std::size_t i = 0; i < count; ++i) data[i] = std::min(std::max(data[i], lo), hi);
      return;
    }
    case ActivationKind::gelu: vector_rows(data, count, gelu_vec); return;
    case ActivationKind::sigmoid: vector_rows(data, count, sigmoid_vec); return;
    case ActivationKind::swish: vector_rows(data, count, [](VecW x) { return x * sigmoid_vec(x); }); return;
    default: break;
  }
  for (std::size_t i = 0; i < count; ++i) data[i] = apply_one(data[i]);
}

std::string Activation::str() const {
  switch (kind) {
    case ActivationKind::linear: return "linear";
    case ActivationKind::relu: {
      std::string s = alpha != 0 ? cat("leaky_relu(", alpha, ")") : "relu";
      if (std::isfinite(max_value)) s += cat("(max=", max_value, ")");
      if (threshold != 0) s += cat("(threshold=", threshold, ")");
      return s;
    }
    case ActivationKind::elu: return cat("elu(", alpha, ")");
    case ActivationKind::selu: return "selu";
    case ActivationKind::sigmoid: return "sigmoid";
    case ActivationKind::hard_sigmoid:
      return beta == 0.5f ? cat("hard_sigmoid(", alpha, ")") : cat("hard_sigmoid(", alpha, ", ", beta, ")");
    case ActivationKind::hard_swish: return "hard_swish";
    case ActivationKind::clip: return cat("clip(", min_value, ", ", max_value, ")");
    case ActivationKind::tanh: return "tanh";
    case ActivationKind::softmax: return "softmax";
    case ActivationKind::swish: return "swish";
    case ActivationKind::gelu: return "gelu";
    case ActivationKind::softplus: return "softplus";
    case ActivationKind::softsign: return "softsign";
    case ActivationKind::exponential: return "exponential";
  }
  return "?";
}

std::vector<std::string> activation_names() {
  return {"linear", "relu",    "relu6", "leaky_relu", "elu",      "selu",     "sigmoid",     "hard_sigmoid",
          "tanh",   "softmax", "swish", "silu",       "gelu",     "softplus", "softsign",    "exponential"};
}

Activation activation_from_name(const std::string& name, bool keras3) {
  Activation a;
  if (name == "linear" || name.empty()) a.kind = ActivationKind::linear;
  else if (name == "relu") a.kind = ActivationKind::relu;
  else if (name == "relu6") { a.kind = ActivationKind::relu; a.max_value = 6.0f; }
  else if (name == "leaky_relu") { a.kind = ActivationKind::relu; a.alpha = 0.2f; }  // Keras' default slope
  else if (name == "elu") { a.kind = ActivationKind::elu; a.alpha = 1.0f; }
  else if (name == "selu") a.kind = ActivationKind::selu;
  else if (name == "sigmoid") a.kind = ActivationKind::sigmoid;
  else if (name == "hard_sigmoid") { a.kind = ActivationKind::hard_sigmoid; a.alpha = keras3 ? 1.0f / 6.0f : 0.2f; }
  else if (name == "tanh") a.kind = ActivationKind::tanh;
  else if (name == "softmax") a.kind = ActivationKind::softmax;
  else if (name == "swish" || name == "silu") a.kind = ActivationKind::swish;
  else if (name == "gelu") a.kind = ActivationKind::gelu;
  else if (name == "softplus") a.kind = ActivationKind::softplus;
  else if (name == "softsign") a.kind = ActivationKind::softsign;
  else if (name == "exponential") a.kind = ActivationKind::exponential;
  else {
    std::string list;
    for (const auto& n : activation_names()) list += (list.empty() ? "" : ", ") + n;
    fail("unknown activation '", name, "' (supported: ", list, ")");
  }
  return a;
}

}  // namespace chorus::layers
