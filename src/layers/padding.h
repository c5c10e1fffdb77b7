#pragma once
// ZeroPadding2D and Cropping2D: add zero rows/columns around each frame, or cut them off.
#include "layers/layer.h"

namespace chorus::layers {

class ZeroPadding2D : public Layer {
 public:
  ZeroPadding2D(std::string name, Pads pads);
  std::string type() const override { return "ZeroPadding2D"; }
  const Pads& pads() const { return pads_; }
  void forward(const std::vector<const Tensor*>& in, Tensor& out) const override;
  std::string describe() const override;

 protected:
  Shape infer_shape(const std::vector<Shape>& in) override;

 private:
  Pads pads_;
};

class Cropping2D : public Layer {
 public:
  Cropping2D(std::string name, Pads crops);
  std::string type() const override { return "Cropping2D"; }
  void forward(const std::vector<const Tensor*>& in, Tensor& out) const override;
  std::string describe() const override;

 protected:
  Shape infer_shape(const std::vector<Shape>& in) override;

 private:
  Pads crops_;
};

}  // namespace chorus::layers
