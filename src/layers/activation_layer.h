#pragma once
// A standalone activation layer (Activation, ReLU, LeakyReLU, ELU, Softmax in Keras).
#include "layers/activation.h"
#include "layers/layer.h"


namespace chorus::layers {

class ActivationLayer : public Layer {
 public:
  ActivationLayer(std::string name, std::string keras_type, Activation activation)
      : Layer(std::move(name)), type_(std::move(keras_type)), activation_(activation) {}
  std::string type() const override { return type_; }
  bool takes_clips() const override { return true; }
  const Activation& activation() const { return activation_; }
  double macs() const override;
  void forward(const std::vector<const Tensor*>& in, Tensor& out) const override;
  bool in_place() const override { return true; }
  std::string describe() const override { return activation_.str(); }

 protected:
  Shape infer_shape(const std::vector<Shape>& in) override { return in[0]; }

 private:
  std::string type_;
  Activation activation_;
};

}  // namespace chorus::layers
