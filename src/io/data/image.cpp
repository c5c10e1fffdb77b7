#include "io/data/image.h"

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <limits>

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

namespace {

// Scans (SOS segments) before the end of a JPEG's data, or 0 for a file that is not a JPEG.
// stb_image decodes each scan over the whole frame, so a small hostile file that repeats its
// scans costs scans x pixels: 401 scans of 6000 x 6000 in a 4 KB file took 4.5 s here and 17 s
// under AddressSanitizer, and each further kilobyte of scans adds about a hundred more.
long long jpeg_scans(const std::vector<unsigned char>& bytes) {
  const std::size_t n = bytes.size();
  if (n < 2 || bytes[0] != 0xFF || bytes[1] != 0xD8) return 0;
  long long scans = 0;
  std::size_t i = 2;
  while (i + 1 < n) {
    const unsigned char marker = bytes[i + 1];
    // Entropy-coded data, stuffed 0xFF 0x00, fill bytes and restart markers: walk on to the next marker.
    if (bytes[i] != 0xFF || marker == 0xFF || marker == 0x00 || marker == 0x01 || (marker >= 0xD0 && marker <= 0xD7)) {
      ++i;
      continue;
    }
    if (marker == 0xD9 || i + 3 >= n) break;  // end of image
    if (marker == 0xDA) ++scans;
    i += 2 + (static_cast<std::size_t>(bytes[i + 2]) << 8 | bytes[i + 3]);
  }
  return scans;
}

}  // namespace

void load_image(const std::string& path, Shape shape, const ImagePreprocess& prep, float* frame) {
  if (shape.c != 1 && shape.c != 3) fail(path, ": the model wants ", shape.c, " channels; images give 1 or 3");
  // One read of the whole file (each frame of a directory input comes through here).
  std::ifstream in(path, std::ios::binary | std::ios::ate);
  if (!in) fail(path, ": cannot open image");
  std::vector<unsigned char> bytes(static_cast<std::size_t>(in.tellg()));
  in.seekg(0);
  if (!in.read(reinterpret_cast<char*>(bytes.data()), static_cast<std::streamsize>(bytes.size())))
    fail(path, ": cannot read image");
  if (bytes.size() > static_cast<std::size_t>(std::numeric_limits<int>::max()))
    fail(path, ": the image file is ", bytes.size() >> 20, " MB; Chorus reads image files of under 2 GB");
  const int size = static_cast<int>(bytes.size());
  int w = 0, h = 0, channels = 0;
  // The header first: a corrupt (or hostile) file can claim a size that would take minutes and
  // gigabytes to decode. 36 Mpixel holds an 8K frame (33 Mpixel), far above what a network takes.
  // A side is bounded too (JPEG's own limit): stb's resize costs the long side times the other
  // side of the output, and 2 x 16,000,000 pixels took 10 s and 1.2 GB to resize to 32 x 32.
  if (!stbi_info_from_memory(bytes.data(), size, &w, &h, &channels))
    fail(path, ": cannot decode image (", stbi_failure_reason(), ")");
  constexpr long long kMostPixels = 36'000'000;
  constexpr int kLongestSide = 65535;
  if (w <= 0 || h <= 0 || static_cast<long long>(w) * h > kMostPixels || w > kLongestSide || h > kLongestSide)
    fail(path, ": the image claims to be ", w, " x ", h, " pixels; Chorus reads images of up to ",
         kMostPixels / 1000000, " Mpixel and ", kLongestSide, " pixels a side");
  // A progressive photo has about 10 scans; the bound allows 27 at 36 Mpixel and 1000 at 1 Mpixel.
  constexpr long long kMostScanPixels = 1'000'000'000;
  if (const long long scans = jpeg_scans(bytes); scans * w * h > kMostScanPixels)
    fail(path, ": the JPEG holds ", scans, " scans of ", w, " x ", h, " pixels, each decoded over the whole image; ",
         "Chorus reads JPEGs whose scans times pixels stay within ", kMostScanPixels / 1000000,
         " Mpixel (a progressive photo has about 10 scans)");
  unsigned char* pixels = stbi_load_from_memory(bytes.data(), size, &w, &h, &channels, shape.c);
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
