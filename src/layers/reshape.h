#pragma once
// Layers that change only the shape: Flatten, Reshape, and Identity (Dropout and other
// training-only layers, which are the identity at inference).
#include "layers/layer.h"

namespace chorus::layers {

// Flatten to a vector: in (h, w, c) order, as Chorus stores frames, or with `channels_first`
// in (c, h, w) order, as an ONNX Flatten and a Keras Flatten that takes channels_first data
// in memory order (Keras 2.0, or data_format channels_last) give their features.
class Flatten : public Layer {
 public:
  Flatten(std::string name, bool channels_first) : Layer(std::move(name)), channels_first_(channels_first) {}
  std::string type() const override { return "Flatten"; }
  bool takes_clips() const override { return true; }
  void forward(const std::vector<const Tensor*>& in, Tensor& out) const override;
  bool in_place() const override { return !needs_permute(); }
  std::string describe() const override { return channels_first_ ? "channels_first" : ""; }

 protected:
  Shape infer_shape(const std::vector<Shape>& in) override { return {1, 1, static_cast<int>(in[0].size())}; }

 private:
  bool needs_permute() const;
  bool channels_first_;
};

// Keras Reshape: target dims without the batch axis (rank 1 to 3, one may be -1), in
// channels_last element order.
class Reshape : public Layer {
 public:
  Reshape(std::string name, std::vector<int> target) : Layer(std::move(name)), target_(std::move(target)) {}
  std::string type() const override { return "Reshape"; }
  void forward(const std::vector<const Tensor*>& in, Tensor& out) const override;
  bool in_place() const override { return true; }

 protected:
  Shape infer_shape(const std::vector<Shape>& in) override;

 private:
  std::vector<int> target_;
};

class Identity : public Layer {
 public:
  Identity(std::string name, std::string keras_type) : Layer(std::move(name)), type_(std::move(keras_type)) {}
  std::string type() const override { return type_; }
  bool takes_clips() const override { return true; }
  void forward(const std::vector<const Tensor*>& in, Tensor& out) const override;
  bool in_place() const override { return true; }

 protected:
  Shape infer_shape(const std::vector<Shape>& in) override { return in[0]; }

 private:
  std::string type_;
};

}  // namespace chorus::layers
