#include "layers/padding.h"

#include <algorithm>
#include <cstring>

#include "core/error.h"

namespace chorus::layers {

ZeroPadding2D::ZeroPadding2D(std::string name, Pads pads) : Layer(std::move(name)), pads_(pads) {
  if (pads.top < 0 || pads.bottom < 0 || pads.left < 0 || pads.right < 0) fail_layer("padding must not be negative");
}

Shape ZeroPadding2D::infer_shape(const std::vector<Shape>& in) {
  return {in[0].h + pads_.top + pads_.bottom, in[0].w + pads_.left + pads_.right, in[0].c};
}

std::string ZeroPadding2D::describe() const {
  return cat("t", pads_.top, " b", pads_.bottom, " l", pads_.left, " r", pads_.right);
}

void ZeroPadding2D::forward(const std::vector<const Tensor*>& in, Tensor& out) const {
  const Shape& is = input_shapes()[0];
  const Shape& os = output_shape();
  out.resize(in[0]->frames(), os);
  std::fill(out.data(), out.data() + out.size(), 0.0f);
  const std::size_t row = static_cast<std::size_t>(is.w) * is.c;
  for (int n = 0; n < in[0]->frames(); ++n)
    for (int y = 0; y < is.h; ++y)
      std::memcpy(out.frame(n) + ((static_cast<std::size_t>(y) + pads_.top) * os.w + pads_.left) * os.c,
                  in[0]->frame(n) + y * row, row * sizeof(float));
}

Cropping2D::Cropping2D(std::string name, Pads crops) : Layer(std::move(name)), crops_(crops) {
  if (crops.top < 0 || crops.bottom < 0 || crops.left < 0 || crops.right < 0) fail_layer("cropping must not be negative");
}

Shape Cropping2D::infer_shape(const std::vector<Shape>& in) {
  Shape out{in[0].h - crops_.top - crops_.bottom, in[0].w - crops_.left - crops_.right, in[0].c};
  if (out.h <= 0 || out.w <= 0) fail_layer("cropping ", describe(), " leaves nothing of input ", in[0].str());
  return out;
}

std::string Cropping2D::describe() const {
  return cat("t", crops_.top, " b", crops_.bottom, " l", crops_.left, " r", crops_.right);
}

void Cropping2D::forward(const std::vector<const Tensor*>& in, Tensor& out) const {
  const Shape& is = input_shapes()[0];
  const Shape& os = output_shape();
  out.resize(in[0]->frames(), os);
  const std::size_t row = static_cast<std::size_t>(os.w) * os.c;
  for (int n = 0; n < in[0]->frames(); ++n)
    for (int y = 0; y < os.h; ++y)
      std::memcpy(out.frame(n) + y * row,
                  in[0]->frame(n) + ((static_cast<std::size_t>(y) + crops_.top) * is.w + crops_.left) * is.c,
                  row * sizeof(float));
}

CenterCrop::CenterCrop(std::string name, int height, int width)
    : Cropping2D(std::move(name), Pads{}), height_(height), width_(width) {
  if (height <= 0 || width <= 0) fail_layer("crop size ", height, "x", width, " is not positive");
}

Shape CenterCrop::infer_shape(const std::vector<Shape>& in) {
  if (in[0].h < height_ || in[0].w < width_)
    fail_layer("a ", in[0].str(), " input is smaller than its ", height_, "x", width_,
               " crop (Keras resizes such inputs; not supported)");
  const int dh = in[0].h - height_, dw = in[0].w - width_;
  crops_ = Pads{dh / 2, dh - dh / 2, dw / 2, dw - dw / 2};
  return Cropping2D::infer_shape(in);
}

}  // namespace chorus::layers
