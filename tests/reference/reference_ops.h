#pragma once
// Plain-loop reference implementations that the fast kernels are tested against. Written
// for clarity, in double precision, with their own index arithmetic (no code shared with
// src/ beyond the Tensor container), so a bug in one is unlikely to hide in the other.
#include <string>
#include <vector>

#include "tensor/tensor.h"

namespace chorus::ref {

// TensorFlow's padding for one axis: returns {out, pad_before}.
std::pair<int, int> tf_axis(int in, int kernel, int stride, int dilation, bool same);

struct ConvParams {
  int kh = 1, kw = 1, sh = 1, sw = 1, dh = 1, dw = 1;
  bool same = false;
  int groups = 1;
};

// kernel: Keras (kh, kw, cin/groups, cout); bias may be empty.
Tensor conv2d(const Tensor& in, const std::vector<float>& kernel, const std::vector<float>& bias, int cout,
              const ConvParams& p);
// kernel: Keras (kh, kw, cin, multiplier).
Tensor depthwise(const Tensor& in, const std::vector<float>& kernel, const std::vector<float>& bias, int multiplier,
                 const ConvParams& p);
// kernel: Keras (in, units) applied to the last axis.
Tensor dense(const Tensor& in, const std::vector<float>& kernel, const std::vector<float>& bias, int units);
Tensor pool2d(const Tensor& in, bool max, int kh, int kw, int sh, int sw, bool same);
Tensor global_pool(const Tensor& in, bool max);
Tensor batch_norm(const Tensor& in, const std::vector<float>& gamma, const std::vector<float>& beta,
                  const std::vector<float>& mean, const std::vector<float>& var, float eps);
Tensor lrn(const Tensor& in, int radius, float bias, float alpha, float beta);
Tensor zero_pad(const Tensor& in, int top, int bottom, int left, int right);
Tensor concat(const std::vector<const Tensor*>& in, int axis);
// Named activation applied elementwise ("relu", "relu6", "sigmoid", ... "softmax" over channels).
Tensor activation(const Tensor& in, const std::string& name, double alpha = 0);

// Layer normalization over channels, in double.
Tensor layer_norm(const Tensor& in, const std::vector<float>& gamma, const std::vector<float>& beta, double eps);

// Multi-head attention as written in the Keras and PyTorch papers' equations: per head,
// softmax(Q K^T / sqrt(dk)) V from Keras-layout kernels (D, H, dk), biases (H, dk), and output
// kernel (H, dv, Dout) with bias (Dout). Value and key default to the query.
struct AttentionWeights {
  std::vector<float> wq, bq, wk, bk, wv, bv, wo, bo;
};
Tensor attention(const Tensor& query, const Tensor& value, const Tensor& key, const AttentionWeights& w, int heads,
                 int dk, int dv, int dout);

}  // namespace chorus::ref
