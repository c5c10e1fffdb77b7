#include "layers/scratch.h"

#include <memory>

namespace chorus::layers {

float* conv_scratch(std::size_t floats) {
  // Uninitialised storage: a vector would zero every float it grows by.
  thread_local std::unique_ptr<float[]> buffer;
  thread_local std::size_t size = 0;
  if (floats > size) {
    buffer.reset();  // free first, so the old and new buffers never coexist
    buffer.reset(new float[floats]);
    size = floats;
  }
  return buffer.get();
}

}  // namespace chorus::layers
