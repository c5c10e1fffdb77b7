#pragma once
// Layers joining two or more inputs: elementwise Add, Multiply, Subtract, Divide, Maximum,
// Minimum and Average (an input of shape (1, 1, c) is broadcast over rows and columns, as in
// squeeze-and-excitation blocks), and Concatenate.
#include "layers/layer.h"

namespace chorus::layers {

// Inputs are combined left to right: ((a op b) op c)...; Subtract and Divide take two inputs,
// Average is the sum over the count.
enum class ElementwiseOp { add, multiply, subtract, divide, maximum, minimum, average };

class Elementwise : public Layer {
 public:
  Elementwise(std::string name, ElementwiseOp op, Activation activation = {})
      : Layer(std::move(name)), op_(op), activation_(activation) {}
  std::string type() const override;
  bool takes_clips() const override { return true; }
  ElementwiseOp op() const { return op_; }
  int arity() const override { return 0; }
  double macs() const override;
  void forward(const std::vector<const Tensor*>& in, Tensor& out) const override;
  // out may alias in[0] when in[0] has the full output shape.
  bool in_place() const override { return input_shapes()[0] == output_shape(); }
  bool positionwise() const override { return true; }
  void forward_positions(const std::vector<const Tensor*>& in, Tensor& out, std::int64_t p0,
                         std::int64_t p1) const override;
  Activation* fusable_activation() override { return &activation_; }
  const Activation& activation() const { return activation_; }
  std::string describe() const override { return activation_.is_linear() ? "" : activation_.str(); }

 protected:
  Shape infer_shape(const std::vector<Shape>& in) override;

 private:
  ElementwiseOp op_;
  Activation activation_;
};

// Joins along one axis of the frame: 0 rows, 1 columns, 2 channels.
class Concatenate : public Layer {
 public:
  Concatenate(std::string name, int axis) : Layer(std::move(name)), axis_(axis) {}
  std::string type() const override { return "Concatenate"; }
  int arity() const override { return 0; }
  int axis() const { return axis_; }
  void forward(const std::vector<const Tensor*>& in, Tensor& out) const override;
  std::string describe() const override;

 protected:
  Shape infer_shape(const std::vector<Shape>& in) override;

 private:
  int axis_;
};

}  // namespace chorus::layers
