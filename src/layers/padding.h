#pragma once
// ZeroPadding2D, Cropping2D and CenterCrop: add zero rows/columns around each frame, or cut
// them off.
#include "layers/layer.h"

namespace chorus::layers {

class ZeroPadding2D : public Layer {
 public:
  ZeroPadding2D(std::string name, Pads pads);
  std::string type() const override { return "ZeroPadding2D"; }
  const Pads& pads() const { return pads_; }
  void forward(const std::vector<const Tensor*>& in, Tensor& out) const override;
  std::string describe() const override;
  RowWindow row_window() const override { return {RowWindow::Kind::shift, 1, 1, 1, pads_.top}; }
  RowWindow column_window() const override { return {RowWindow::Kind::shift, 1, 1, 1, pads_.left}; }

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
  Pads crops_;
};

// Keras' CenterCrop to a fixed size: the middle rows and columns; an odd difference leaves the
// extra one at the bottom or right, as Keras' integer halving does. Inputs smaller than the
// crop (which Keras resizes) are refused.
class CenterCrop : public Cropping2D {
 public:
  CenterCrop(std::string name, int height, int width);
  std::string type() const override { return "CenterCrop"; }

 protected:
  Shape infer_shape(const std::vector<Shape>& in) override;

 private:
  int height_, width_;
};

}  // namespace chorus::layers
