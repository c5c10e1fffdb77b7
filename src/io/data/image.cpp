#include "io/data/image.h"

#include <algorithm>
#include <filesystem>

#include "core/error.h"

#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wunused-but-set-variable"
#define STB_IMAGE_IMPLEMENTATION
#define STBI_FAILURE_USERMSG
#include <stb_image.h>
#define STB_IMAGE_RESIZE_IMPLEMENTATION
#include <stb_image_resize.h>
#pragma GCC diagnostic pop

namespace chorus::io {

void load_image(const std::string& path, Shape shape, const ImagePreprocess& prep, float* frame) {
  if (shape.c != 1 && shape.c != 3) fail(path, ": the model wants ", shape.c, " channels; images give 1 or 3");
  int w = 0, h = 0, channels = 0;
  // The header first: a corrupt (or hostile) file can claim a size that would take minutes and
  // gigabytes to decode. 36 Mpixel holds an 8K frame (33 Mpixel), far above what a network takes.
  if (!stbi_info(path.c_str(), &w, &h, &channels)) fail(path, ": cannot decode image (", stbi_failure_reason(), ")");
  constexpr long long kMostPixels = 36'000'000;
  if (w <= 0 || h <= 0 || static_cast<long long>(w) * h > kMostPixels)
    fail(path, ": the image claims to be ", w, " x ", h, " pixels; Chorus reads images of up to ",
         kMostPixels / 1000000, " Mpixel");
  unsigned char* pixels = stbi_load(path.c_str(), &w, &h, &channels, shape.c);
  if (!pixels) fail(path, ": cannot decode image (", stbi_failure_reason(), ")");
  std::vector<unsigned char> resized(static_cast<std::size_t>(shape.h) * shape.w * shape.c);
  // An image of the model's size is taken as it is: stb's resampling filter is not the identity
  // at scale 1 (it changed pixels by up to 29 levels of 255).
  int ok = 1;
  if (w == shape.w && h == shape.h)
    std::copy(pixels, pixels + resized.size(), resized.begin());
  else
    ok = stbir_resize_uint8(pixels, w, h, 0, resized.data(), shape.w, shape.h, 0, shape.c);
  stbi_image_free(pixels);
  if (!ok) fail(path, ": resize to ", shape.w, "x", shape.h, " failed");
  pixels_to_frame(resized.data(), resized.size(), shape.c, prep, frame);
}

void pixels_to_frame(const unsigned char* pixels, std::size_t count, int channels, const ImagePreprocess& prep,
                     float* frame) {
  for (std::size_t i = 0; i < count; ++i) {
    const int ch = static_cast<int>(i % channels);
    float v = pixels[i] * prep.scale;
    if (!prep.mean.empty()) v -= prep.mean[std::min<std::size_t>(ch, prep.mean.size() - 1)];
    if (!prep.stddev.empty()) v /= prep.stddev[std::min<std::size_t>(ch, prep.stddev.size() - 1)];
    frame[i] = v;
  }
}

std::vector<std::string> list_images(const std::string& directory) {
  std::vector<std::string> out;
  std::error_code ec;
  for (const auto& entry : std::filesystem::directory_iterator(directory, ec)) {
    std::string ext = entry.path().extension().string();
    std::transform(ext.begin(), ext.end(), ext.begin(), ::tolower);
    if (ext == ".png" || ext == ".jpg" || ext == ".jpeg" || ext == ".bmp" || ext == ".gif" || ext == ".tga" ||
        ext == ".ppm" || ext == ".pgm")
      out.push_back(entry.path().string());
  }
  if (ec) fail(directory, ": cannot list directory (", ec.message(), ")");
  std::sort(out.begin(), out.end());
  return out;
}

}  // namespace chorus::io
