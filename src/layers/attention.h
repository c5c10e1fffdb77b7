#pragma once
// Multi-head attention (Keras MultiHeadAttention; PyTorch's nn.MultiheadAttention as ONNX
// exports it): the query, key and value projections, softmax(Q K^T * scale) V per head, and the
// output projection, in one layer. Sequences are frames of (1, L, D) (any rows x columns count
// as L positions). Inputs: query, then value, then key (Keras' call order); one input is
// self-attention. Every input has D features.
//
// A layer may hold only heads [head_begin, head_end) of the full layer: a head split. Its
// output is then that share of the output projection, a partial sum the members add up; only
// the member with `output_bias` adds the projection's bias.
#include <memory>

#include "layers/layer.h"
#include "layers/packed_gemm.h"

namespace chorus::layers {

struct AttentionSettings {
  int heads = 1;      // of the whole layer
  int key_dim = 1;    // per head, for queries and keys
  int value_dim = 0;  // per head; 0: key_dim
  int output_dim = 0;  // features out; 0: the query's
  bool use_bias = true;
  float scale = 0.0f;  // applied to Q K^T; 0: 1 / sqrt(key_dim)
  int head_begin = 0;  // heads this layer holds
  int head_end = -1;   // -1: all
  bool output_bias = true;  // add the output projection's bias (false on all but one member)
};

class MultiHeadAttention : public Layer {
 public:
  MultiHeadAttention(std::string name, AttentionSettings settings);
  std::string type() const override { return "MultiHeadAttention"; }
  int arity() const override { return -1; }  // one to three inputs
  const AttentionSettings& settings() const { return settings_; }
  int local_heads() const { return settings_.head_end - settings_.head_begin; }

  // Keras' names and shapes, over the heads this layer holds: query/kernel (D, heads, key_dim),
  // query/bias (heads, key_dim), the same for key and value, attention_output/kernel
  // (heads, value_dim, output_dim) and attention_output/bias (output_dim).
  std::vector<WeightSpec> weight_specs() const override;
  void set_weights(WeightMap weights) override;
  double macs() const override;
  void forward(const std::vector<const Tensor*>& in, Tensor& out) const override;
  // One frame: the projections, scores and context first, then the output projection part by
  // part (a head split's partial sums can then be reduced while the rest projects).
  void forward_in_parts(const std::vector<const Tensor*>& in, Tensor& out, const std::vector<std::int64_t>& parts,
                        FunctionRef<void(int, double)> part_done) const override;
  double partwise_fraction() const override;
  // Self-attention takes its input part by part: each position's Q, K and V projections, into
  // the layer's own buffer (kept from batch to batch); the scores wait for every position.
  double consumable_fraction() const override;
  void consume_positions(const std::vector<const Tensor*>& in, std::int64_t p0, std::int64_t p1) const override;
  void forward_consumed_in_parts(const std::vector<const Tensor*>& in, Tensor& out,
                                 const std::vector<std::int64_t>& parts,
                                 FunctionRef<void(int, double)> part_done) const override;
  std::string describe() const override;

 protected:
  Shape infer_shape(const std::vector<Shape>& in) override;

 private:
  int projected() const;  // Q, K and V features of one position, over the local heads
  // Frame n's context (L x heads * value_dim, token-major) into the layer's scratch; returns it.
  // `made`: frame n's projections, already made (consume_positions); null: made here.
  const float* context_of(const std::vector<const Tensor*>& in, int n, const float* made = nullptr) const;
  // The output projection of each frame's context, part by part (forward_in_parts).
  void output_in_parts(const std::vector<const Tensor*>& in, Tensor& out, const std::vector<std::int64_t>& parts,
                       FunctionRef<void(int, double)> part_done, const float* made) const;

  AttentionSettings settings_;
  // [Wq * scale; Wk; Wv] column-major (projected() x D): one product projects all three. For
  // self-attention it is packed once at load (packed_gemm) and the plain copy dropped.
  std::vector<float> in_kernel_, in_bias_;
  std::vector<float> out_bias_;
  std::unique_ptr<PackedWeights> packed_in_, packed_out_;  // packed_out_: (heads * value_dim) x output_dim
  mutable std::vector<float> consumed_;                    // consume_positions' projections, frames x L x projected()
};

}  // namespace chorus::layers
