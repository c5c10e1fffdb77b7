// Image files (PNG, JPEG, BMP, GIF...), decoded and resized to a model's input.
#include <vector>

#include "core/error.h"
#include "fuzz_targets.h"
#include "io/data/image.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  chorus::fuzz::TempInput file(data, size, ".png");
  std::vector<float> frame(32 * 32 * 3);
  try {
    chorus::io::load_image(file.path(), chorus::Shape{32, 32, 3}, chorus::io::ImagePreprocess{}, frame.data());
  } catch (const chorus::Error&) {
  }
  return 0;
}
