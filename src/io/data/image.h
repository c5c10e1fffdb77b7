#pragma once
// Image files (PNG, JPEG, BMP... through stb_image) as model input frames.
#include <cstddef>
#include <string>
#include <vector>

#include "tensor/tensor.h"

namespace chorus::io {

struct ImagePreprocess {
  float scale = 1.0f / 255.0f;  // multiply the 0..255 pixel values first
  std::vector<float> mean;      // then subtract per channel (empty: 0)
  std::vector<float> stddev;    // then divide per channel (empty: 1)
};

// Loads one image resized (bilinear) to shape.h x shape.w with shape.c channels (1 or 3;
// grey images are expanded, colour images turned grey as needed) into `frame` (NHWC).
void load_image(const std::string& path, Shape shape, const ImagePreprocess& prep, float* frame);

// 8-bit pixels (`count` values, `channels` per pixel, interleaved) into model values: scaled,
// then normalised per channel, as images and video frames are.
void pixels_to_frame(const unsigned char* pixels, std::size_t count, int channels, const ImagePreprocess& prep,
                     float* frame);

// Image files in a directory (by extension), sorted by name.
std::vector<std::string> list_images(const std::string& directory);

}  // namespace chorus::io
