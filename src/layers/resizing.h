#pragma once
// Keras' Resizing to a fixed size: bilinear (half-pixel centres, no antialiasing: TensorFlow's
// resize and PyTorch's interpolate with align_corners=False) or nearest.
#include "layers/layer.h"

namespace chorus::layers {

class Resizing : public Layer {
 public:
  enum class Interpolation { bilinear, nearest };
  // Keras' crop_to_aspect_ratio (the largest centred window of the target's aspect ratio) and
  // pad_to_aspect_ratio (`fill` rows or columns, as many on both sides, to reach it), applied
  // before resizing; none distorts the aspect ratio.
  enum class Framing { none, crop, pad };
  Resizing(std::string name, int height, int width, Interpolation interpolation, Framing framing = Framing::none,
           float fill = 0.0f);
  std::string type() const override { return "Resizing"; }
  double macs() const override { return 4.0 * static_cast<double>(output_shape().size()); }
  void forward(const std::vector<const Tensor*>& in, Tensor& out) const override;
  std::string describe() const override;

 protected:
  Shape infer_shape(const std::vector<Shape>& in) override;

 private:
  // Where output row / column o samples the input: rows lo and hi, hi weighted by weight_hi.
  struct Tap {
    int lo, hi;
    float weight_hi;
  };
  int height_, width_;
  Interpolation interpolation_;
  Framing framing_;
  float fill_;
  // Taps index the input; with padding, -1 stands for a fill row or column.
  std::vector<Tap> rows_, cols_;  // made when the input shape is known
  bool padded_ = false;           // some tap reads the fill
};

}  // namespace chorus::layers
