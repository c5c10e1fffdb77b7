#pragma once
// Layers on token sequences, frames of (1, L, D): learned tokens put in front (a ViT's class
// token), a learned tensor added (position embeddings), and one token taken out (the class
// token, for the classifier head).
#include "layers/layer.h"

namespace chorus::layers {

// Puts `count` learned tokens ("token", (count, D)) before the sequence: (1, L, D) to
// (1, count + L, D). ONNX: Concat of a constant (the class token, often Expand-ed) and the
// sequence along the sequence axis.
class ClassToken : public Layer {
 public:
  ClassToken(std::string name, int count);
  std::string type() const override { return "ClassToken"; }
  std::vector<WeightSpec> weight_specs() const override;
  void set_weights(WeightMap weights) override;
  void forward(const std::vector<const Tensor*>& in, Tensor& out) const override;

 protected:
  Shape infer_shape(const std::vector<Shape>& in) override;

 private:
  int count_;
  std::vector<float> tokens_;
};

// Adds a learned tensor of the frame's shape ("constant"): position embeddings, and ONNX Add
// of a computed value and a constant that varies along more than the channels.
class AddConstant : public Layer {
 public:
  explicit AddConstant(std::string name) : Layer(std::move(name)) {}
  std::string type() const override { return "AddConstant"; }
  std::vector<WeightSpec> weight_specs() const override;
  void set_weights(WeightMap weights) override;
  double macs() const override { return static_cast<double>(output_shape().size()); }
  void forward(const std::vector<const Tensor*>& in, Tensor& out) const override;
  bool in_place() const override { return true; }

 protected:
  Shape infer_shape(const std::vector<Shape>& in) override { return in[0]; }

 private:
  std::vector<float> constant_;
};

// Takes token `index` of the sequence: (1, L, D) to the vector (1, 1, D). ONNX Gather on the
// sequence axis with a constant index; Keras 3 `x[:, 0]`.
class TakeToken : public Layer {
 public:
  TakeToken(std::string name, int index) : Layer(std::move(name)), index_(index) {}
  std::string type() const override { return "TakeToken"; }
  int index() const { return index_; }
  void forward(const std::vector<const Tensor*>& in, Tensor& out) const override;
  std::string describe() const override { return cat("token ", index_); }

 protected:
  Shape infer_shape(const std::vector<Shape>& in) override;

 private:
  int index_;
};

// Token ids to learned vectors (Keras Embedding): a vector of L ids, (1, 1, L) as ids come in
// (floats holding integers), to the sequence (1, L, D) of rows of "embeddings" (vocabulary, D).
// An id outside the vocabulary is an error naming the layer.
class Embedding : public Layer {
 public:
  Embedding(std::string name, int vocabulary, int dim);
  std::string type() const override { return "Embedding"; }
  std::vector<WeightSpec> weight_specs() const override { return {{"embeddings", {vocabulary_, dim_}}}; }
  void set_weights(WeightMap weights) override { table_ = take_weight(weights, weight_specs()[0]); }
  void forward(const std::vector<const Tensor*>& in, Tensor& out) const override;
  std::string describe() const override { return cat(vocabulary_, " ids"); }

 protected:
  Shape infer_shape(const std::vector<Shape>& in) override;

 private:
  int vocabulary_, dim_;
  std::vector<float> table_;
};

}  // namespace chorus::layers
